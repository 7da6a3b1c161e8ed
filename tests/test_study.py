"""bench/study.py's bookkeeping: settings carried across budgets, resuming a cut search, the
order after the searches."""

import itertools
import math

import pytest

from bench import study
from bench import study_report as report


def test_exp_range_keeps_its_decay_over_the_run_at_every_budget():
    found = {
        "schedule.gamma": 0.9995,
        "optimizer.learning_rate": 0.1,
        "schedule.step_size": "0.25dur",
    }
    search_steps = study.SETUPS["mnist_cnn"].search_epochs * 1719
    for budget in (1, 3, 10):
        overrides = dict(
            o.split("=", 1) for o in study.settings_for("mnist_cnn", "x", found, budget)
        )
        gamma = float(overrides["schedule.gamma"])
        assert math.isclose(gamma ** (budget * 1719), 0.9995**search_steps, rel_tol=1e-9)
        assert overrides["schedule.step_size"] == "0.25dur"
        assert float(overrides["optimizer.learning_rate"]) == 0.1


def test_a_search_cut_short_resumes_with_the_trials_it_lacks(tmp_path, monkeypatch):
    import optuna

    monkeypatch.setattr(study, "STATE_DIR", tmp_path)
    name = "fashion_mlp-search-cosine-2ep"
    made = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")
    for value in (0.8, 0.7):
        trial = made.ask()
        made.tell(trial, value)
    made.ask()  # left RUNNING, as by a killed sweep

    assert study.trials_left(name, mark=False) == study.SEARCH_TRIALS - 2
    assert study.optuna_study(name).trials[-1].state.name == "RUNNING"  # a look changes nothing
    assert study.trials_left(name) == study.SEARCH_TRIALS - 2
    cut = study.optuna_study(name).trials[-1]
    assert cut.state.name == "FAIL" and cut.user_attrs[study.INTERRUPTED]
    assert study.trials_left("no-such-search") == study.SEARCH_TRIALS


def test_time_to_accuracy_reads_the_mean_curve_of_the_seeds():
    runs = [
        {"curve": [(100, 0.80), (200, 0.86), (300, 0.88)]},
        {"curve": [(100, 0.82), (200, 0.84), (300, 0.90)]},
    ]
    curve = report.mean_curve(runs)
    assert curve == [
        (100, pytest.approx(0.81)),
        (200, pytest.approx(0.85)),
        (300, pytest.approx(0.89)),
    ]
    assert report.first_reach(curve, 0.85) == 200
    assert report.first_reach(curve, 0.95) is None


def test_after_the_searches_the_range_test_evidence_runs_first(tmp_path, monkeypatch):
    # A tiny study whose searches are done (one finished trial each, in a state folder of its
    # own): the 3-epoch runs of the auto families and of their tuned twins come first, then
    # the other rules; the auto families always name their rule, so a change of lr_find's
    # default cannot change a study under way.
    import optuna

    monkeypatch.setattr(study, "STATE_DIR", tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    rate = optuna.distributions.FloatDistribution(0.01, 1.0, log=True)
    for family in ("one_cycle", "cosine", "one_cycle_auto"):
        searched = optuna.create_study(
            study_name=study.search_name("fashion_mlp", family), storage=storage
        )
        params = {} if family.endswith("_auto") else {"optimizer.learning_rate": 0.1}
        dists = {k: rate for k in params}
        searched.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=0.9))
    first = list(itertools.islice(study.after_search("fashion_mlp"), 8))
    assert [s.name for s in first] == [
        "fashion_mlp-retrain-one_cycle-3ep",
        "fashion_mlp-retrain-cosine-3ep",
        "fashion_mlp-retrain-one_cycle_auto-3ep",
        "fashion_mlp-retrain-cosine_auto-3ep",
        "fashion_mlp-rules-steepest-one_cycle_auto-3ep",
        "fashion_mlp-rules-minimum-one_cycle_auto-3ep",
        "fashion_mlp-rules-steepest-cosine_auto-3ep",
        "fashion_mlp-rules-minimum-cosine_auto-3ep",
    ]
    rules = [[o for o in s.overrides if o.startswith("lr_find.suggestion=")] for s in first]
    named = [f"lr_find.suggestion={r}" for r in ("valley", "steepest", "minimum")]
    assert rules == [[], [], [named[0]], [named[0]], [named[1]], [named[2]], [named[1]], [named[2]]]
    assert all(s.folder.name.startswith(s.name) for s in first)


def test_the_archive_holds_every_sweep_once_with_its_runs(tmp_path, monkeypatch):
    """The committed store the doc's parent runs open in: a parent per sweep, named as the
    sweep, with its runs (training seeds, search trials) under it; a second pass adds none."""
    import json

    import optuna
    from mlflow.tracking import MlflowClient

    from bench import study_archive

    monkeypatch.setattr(study, "STATE_DIR", tmp_path)
    common = ["experiment=mnist_cnn_cosine", f"hydra.sweep.dir={study.STUDY_DIR}/sweeps/x"]
    search = {
        "name": "mnist_cnn-search-cosine-2ep",
        "phase": "search",
        "family": "cosine",
        "budget": 2,
        "overrides": [*common, "optimizer.learning_rate=tag(log, interval(0.0001, 0.01))"],
    }
    retrain = {
        "name": "mnist_cnn-retrain-cosine-3ep",
        "phase": "retrain",
        "family": "cosine",
        "budget": 3,
        "overrides": [*common, "optimizer.learning_rate=0.008", "trainer.seed=1,2,3"],
    }
    with (tmp_path / "progress.jsonl").open("w") as f:
        for i, entry in enumerate((search, retrain)):
            entry.update(setup="mnist_cnn", parent_run_id=f"p{i}", rc=0, seconds=90.0)
            f.write(json.dumps(entry) + "\n")
    made = optuna.create_study(
        study_name=search["name"], storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize"
    )
    for value in (0.98, 0.99):
        trial = made.ask(
            {
                "optimizer.learning_rate": optuna.distributions.FloatDistribution(
                    1e-4, 1e-2, log=True
                )
            }
        )
        trial.report(value - 0.01, 1719)
        made.tell(trial, value)
    runs = [
        {
            "run_id": f"r{seed}",
            "status": "FINISHED",
            "seed": seed,
            "test_accuracy": 0.99 + seed / 1000,
            "val_accuracy": 0.989,
            "steps": 5157,
            "curve": [[1289, 0.98], [5157, 0.99 + seed / 1000]],
            "seconds": 60.0,
            "suggested_lr": float("nan"),
            "lr": [[0, 0.008], [5157, 0.0]],
        }
        for seed in (1, 2, 3)
    ]
    runs_file = tmp_path / "runs.jsonl"
    runs_file.write_text(json.dumps({"parent_run_id": "p1", "runs": runs}) + "\n")

    path = tmp_path / "archive.db"
    assert study_archive.archive(path, runs_file) == 2
    client = MlflowClient(f"sqlite:///{path}")
    experiment = client.get_experiment_by_name("lrlab-study-mnist_cnn").experiment_id
    parents = {
        r.info.run_name: r
        for r in client.search_runs([experiment], "tags.`lrlab.study.sweep` != ''")
    }
    assert set(parents) == {search["name"], retrain["name"]}
    trained = parents[retrain["name"]]
    assert trained.data.params["optimizer.learning_rate"] == "0.008"
    assert "hydra.sweep.dir" not in trained.data.params  # this machine's folders stay out
    assert trained.data.tags["lrlab.study.source_run_id"] == "p1"
    assert trained.info.end_time - trained.info.start_time == 90_000

    def kids(parent):
        return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")

    seeds = {r.data.params["trainer.seed"]: r for r in kids(trained)}
    assert sorted(seeds) == ["1", "2", "3"]
    curve = client.get_metric_history(seeds["2"].info.run_id, "test/accuracy")
    assert [(m.step, m.value) for m in curve] == [(1289, 0.98), (5157, pytest.approx(0.992))]
    assert "lr_find/suggested_lr" not in seeds["2"].data.metrics  # no range test: nothing
    trials = kids(parents[search["name"]])
    assert sorted(r.data.metrics["val/accuracy"] for r in trials) == pytest.approx([0.98, 0.99])
    assert {r.info.status for r in trials} == {"FINISHED"}

    assert study_archive.archive(path, runs_file) == 0  # ids given stay put
    assert len(client.search_runs([experiment], "")) == 2 + 3 + 2


def test_an_archive_that_is_no_sqlite_file_is_named_with_the_fix(tmp_path):
    from bench import study_archive

    broken = tmp_path / "mlflow.db"
    broken.write_text("<<<<<<< HEAD\n")  # a merge that kept its conflict markers
    with pytest.raises(SystemExit, match=f"{broken} is not an SQLite file.*delete it and run"):
        study_archive.archive(broken)
    assert broken.read_text() == "<<<<<<< HEAD\n"  # left for the user to look at
