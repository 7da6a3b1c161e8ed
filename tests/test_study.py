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


def test_after_the_searches_the_range_test_evidence_runs_first():
    # The committed state of the study: the 3-epoch runs of the auto families and of their
    # tuned twins, then the other rules; the auto families always name their rule, so a
    # change of lr_find's default cannot change the study under way.
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
