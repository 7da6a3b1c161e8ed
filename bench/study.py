"""The schedule study (issue 13): which schedule trains the two classic setups best and fastest.

    nohup python bench/study.py >> outputs/study/study.log 2>&1 &   # run, or resume
    python bench/study.py --plan      # the sweeps still to run, with the budget
    python bench/study.py --report    # bench/results/study.json, docs/results.md, plots

Every step is a Hydra sweep of `python -m trainer -m` on the real data, tracked into one
MLflow store (`outputs/study/mlflow.db`, a parent run per sweep), in this order, one setup
after the other (the Fashion-MNIST MLP first: it is four times cheaper):

1. recipe: the classic preset (`conf/experiment/`) as it is, 10 epochs, seeds 1, 2, 3.
2. search: per schedule family, an Optuna search of `SEARCH_TRIALS` trials at
   `search_epochs`, choosing on val/accuracy (TPE seeded 42, median pruning after the first
   epoch), the same space for the peak rate in every family.
3. retrain: each family's best settings at 1, 2 and 3 epochs, seeds 1, 2, 3.
4. rules: the `auto` families (their retrains use the rule `BASE_RULE`) again at 3 epochs
   with the range test's other suggestion rules (`OTHER_RULES`), to see which rule suits
   which key.
5. long: the best `LONG_FAMILIES` families (mean val/accuracy at 3 epochs) at 5 and 10 epochs.

Steps 3 to 5 run in the order of `after_search`: what the range test's rules are measured
against first, so that the rule choice has its evidence early.

The model, optimizer, batch size and data stay the preset's: only the schedule changes.
Lengths are given in `dur` (fractions of the run) so that settings found at the search's
budget mean the same at the others; `exp_range`'s per-step gamma is converted to keep its
decay over the run (`settings_for`). Runs whose budget is the longest of their family log
the test curve (`trainer.test_every=0.25ep`) for time-to-accuracy; the test set never
chooses anything.

Resume: each finished sweep is appended to `bench/results/study/progress.jsonl`; run the
command again and it goes on with the next one. A search cut short continues its Optuna
study (`bench/results/study/optuna.db`) with the trials it still lacks. The MLflow store
(`outputs/study/mlflow.db`, about 1 GB) stays on the machine that ran the sweeps; what the
report needs of each sweep's runs is kept in `bench/results/study/runs.jsonl` once read, so
the study resumes and reports on a fresh clone; `--report` also makes of it the small MLflow
store committed beside it (`bench/study_archive.py`), where a reader opens the runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainer.data import data_root  # noqa: E402

os.environ.setdefault("LRLAB_DATA_DIR", str(data_root(base=ROOT)))  # as python -m trainer

log = logging.getLogger("bench.study")
STUDY_DIR = ROOT / "outputs" / "study"  # the MLflow store, the sweeps' folders and logs
# What the study needs to resume and report on another machine, committed as it goes: the
# sweeps done, the Optuna studies, and each sweep's runs as read from MLflow (runs.jsonl).
STATE_DIR = ROOT / "bench" / "results" / "study"
SEARCH_TRIALS = 6
SEEDS = (1, 2, 3)
BUDGETS = (1, 2, 3)
LONG_BUDGETS = (5, 10)
LONG_FAMILIES = 3
# The range test's rule of the `auto` families' retrains and long runs (lr_find's default
# when the study began), and the other rules, tried on them at the longest retrain budget.
BASE_RULE = "valley"
OTHER_RULES = ("steepest", "minimum")
CURVE_EVERY = "0.25ep"


@dataclass(frozen=True)
class Setup:
    """One classic recipe: its preset, the accuracy it is known for, and the rate space."""

    preset: str
    classic: float  # the recipe's 10-epoch test accuracy as the issue states it
    rate_space: str  # optimizer.learning_rate: every family's rates follow it
    search_epochs: int = 2


SETUPS = {
    "fashion_mlp": Setup("fashion_mlp_sgd", 0.8731, "tag(log, interval(0.01, 1.0))"),
    "mnist_cnn": Setup("mnist_cnn_cosine", 0.9920, "tag(log, interval(1e-4, 1e-2))"),
}


@dataclass(frozen=True)
class Family:
    """A schedule family: fixed overrides and its own settings' search space."""

    fixed: tuple
    space: dict = field(default_factory=dict)
    rate: bool = True  # whether the peak rate is searched (not with max_lr=auto)
    twin: str | None = None  # an `auto` family: the tuned family it is measured against


DURATIONS = "choice(0.125dur, 0.25dur, 0.5dur)"
ONE_CYCLE = {
    "schedule.pct_start": "interval(0.1, 0.5)",
    "schedule.div_factor": "choice(10.0, 25.0, 100.0)",
    "schedule.anneal_strategy": "choice(cos, linear)",
}
FAMILIES = {
    "constant": Family(("schedule=constant",)),
    "exponential": Family(
        ("schedule=exponential", "schedule.decay_steps=1dur"),
        {"schedule.decay_rate": "tag(log, interval(0.001, 0.5))"},  # the factor over the run
    ),
    "step": Family(
        ("schedule=step",),
        {"schedule.step_size": DURATIONS, "schedule.decay_rate": "interval(0.1, 0.7)"},
    ),
    "piecewise": Family(("schedule=piecewise",)),  # x0.1 at 50 %, x0.01 at 75 % of the run
    "polynomial": Family(("schedule=polynomial",), {"schedule.power": "interval(0.5, 3.0)"}),
    "inverse_time": Family(
        ("schedule=inverse_time", "schedule.decay_steps=0.1dur"),
        {"schedule.decay_rate": "tag(log, interval(0.1, 10.0))"},
    ),
    "cosine": Family(("schedule=cosine",)),
    "cosine_warmup": Family(
        ("schedule=cosine",), {"schedule.warmup_steps": "choice(0.05dur, 0.1dur, 0.2dur)"}
    ),
    "sgdr": Family(
        ("schedule=sgdr", "schedule.t_mult=2.0"),
        # cycles of 1, 2, 4 sevenths or of 1, 2 thirds of the run: the run ends a cycle
        {
            "schedule.first_cycle_steps": "choice(0.1429dur, 0.3334dur)",
            "schedule.m_mul": "interval(0.5, 1.0)",
        },
    ),
    "clr_triangular": Family(
        ("schedule=clr", "schedule.mode=triangular"), {"schedule.step_size": DURATIONS}
    ),
    "clr_triangular2": Family(
        ("schedule=clr", "schedule.mode=triangular2"), {"schedule.step_size": DURATIONS}
    ),
    "clr_exp_range": Family(
        ("schedule=clr", "schedule.mode=exp_range"),
        # per step, at the search's length; settings_for converts it for other lengths
        {"schedule.step_size": DURATIONS, "schedule.gamma": "interval(0.9990, 0.99999)"},
    ),
    "one_cycle": Family(("schedule=one_cycle",), ONE_CYCLE),
    "one_cycle_auto": Family(
        ("schedule=one_cycle", "schedule.max_lr=auto"), ONE_CYCLE, rate=False, twin="one_cycle"
    ),
    # The range test's suggestion as it is: nothing left to search.
    "cosine_auto": Family(
        ("schedule=cosine", "schedule.initial_lr=auto"), rate=False, twin="cosine"
    ),
}


# --- the sweeps -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Sweep:
    """One `python -m trainer -m` of the study: its phase, where, and its overrides."""

    phase: str  # recipe | search | retrain | long | rules-<rule>
    setup: str
    family: str  # "recipe" for the recipe
    budget: int  # epochs
    overrides: tuple
    folder: Path | None = None  # hydra.sweep.dir (None: a search found complete, not run)

    @property
    def name(self):
        return f"{self.setup}-{self.phase}-{self.family}-{self.budget}ep"


def common(setup, name):
    """The sweep's folder and what every sweep of the study sets: the preset, the store,
    what is kept. A sweep started again after a cut gets a folder of its own (`name.2`)."""
    sweeps, attempt = STUDY_DIR / "sweeps", 1
    while (sweeps / (name if attempt == 1 else f"{name}.{attempt}")).exists():
        attempt += 1
    folder = sweeps / (name if attempt == 1 else f"{name}.{attempt}")
    return folder, (
        f"experiment={SETUPS[setup].preset}",
        f"tracking.uri=sqlite:///{STUDY_DIR}/mlflow.db",
        f"tracking.experiment=lrlab-study-{setup}",
        "sink=[mlflow]",  # per-step values in MLflow; no TensorBoard or CSV copies
        "trainer.models=none",
        "trainer.checkpoint=false",
        "trainer.checkpoint_every=null",  # a sweep resumes by the sweep, not by the run
        "optimized_metric=val/accuracy",
        f"hydra.sweep.dir={folder}",
        "hydra.sweep.subdir=${hydra.job.num}",
    )


def search_name(setup, family):
    return f"{setup}-search-{family}-{SETUPS[setup].search_epochs}ep"


def search_sweep(setup, family, trials):
    f, s = FAMILIES[family], SETUPS[setup]
    name = search_name(setup, family)
    space = {**({"optimizer.learning_rate": s.rate_space} if f.rate else {}), **f.space}
    folder, settings = common(setup, name)
    overrides = (
        *settings,
        *f.fixed,
        f"trainer.epochs={s.search_epochs}",
        "hydra/sweeper=lrlab_optuna",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.storage=sqlite:///{STATE_DIR}/optuna.db",
        "hydra.sweeper.sampler.seed=42",
        "+hydra.sweeper.sampler.n_startup_trials=3",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=0",  # may prune after the first epoch
        *(f"{key}={value}" for key, value in space.items()),
    )
    return Sweep("search", setup, family, s.search_epochs, overrides, folder)


def settings_for(setup, family, best, budget):
    """The best settings (overrides) of a search, for a run of `budget` epochs: exp_range's
    per-step gamma raised to search_epochs / budget, so its decay over the run is kept."""
    out = []
    for key, value in best.items():
        if key == "schedule.gamma":
            value = value ** (SETUPS[setup].search_epochs / budget)
        out.append(f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}")
    return out


def train_sweep(phase, setup, family, budget, best, curve):
    name = f"{setup}-{phase}-{family}-{budget}ep"
    fixed = () if family == "recipe" else FAMILIES[family].fixed
    if family != "recipe" and FAMILIES[family].twin:  # the range test's rule, named
        rule = phase.removeprefix("rules-") if phase.startswith("rules-") else BASE_RULE
        fixed = (*fixed, f"lr_find.suggestion={rule}")
    folder, settings = common(setup, name)
    overrides = (
        *settings,
        *fixed,
        *settings_for(setup, family, best, budget),
        f"trainer.epochs={budget}",
        "trainer.seed=" + ",".join(str(seed) for seed in SEEDS),
        *((f"trainer.test_every={CURVE_EVERY}",) if curve else ()),
    )
    return Sweep(phase, setup, family, budget, overrides, folder)


# --- progress -------------------------------------------------------------------------------
def finished():
    """{sweep name: its progress record} of the sweeps done."""
    path = STATE_DIR / "progress.jsonl"
    if not path.exists():
        return {}
    return {r["name"]: r for r in map(json.loads, path.read_text().splitlines())}


def cached_runs(path=None):
    """{parent run id: [run facts]} of the sweeps whose runs were read from MLflow once and
    kept in `runs.jsonl` (by the report's `collect`)."""
    path = path or STATE_DIR / "runs.jsonl"
    if not path.exists():
        return {}
    records = map(json.loads, path.read_text().splitlines())
    return {r["parent_run_id"]: r["runs"] for r in records}


def record(sweep, started, rc):
    summary = sweep.folder / "sweep.json" if sweep.folder else None
    info = json.loads(summary.read_text()) if summary and summary.exists() else {}
    entry = {
        "name": sweep.name,
        "phase": sweep.phase,
        "setup": sweep.setup,
        "family": sweep.family,
        "budget": sweep.budget,
        "overrides": list(sweep.overrides),
        "parent_run_id": info.get("parent", {}).get("mlflow", {}).get("run_id"),
        "rc": rc,
        "seconds": round(time.time() - started, 1),
    }
    with (STATE_DIR / "progress.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def launch(sweep):
    """Run one sweep to its end (its log in the sweep folder); record it."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log.info("%s: python -m trainer -m %s", sweep.name, " ".join(sweep.overrides))
    with (sweep.folder / "sweep.log").open("a") as out:
        rc = subprocess.call(
            [sys.executable, "-m", "trainer", "-m", *sweep.overrides],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    entry = record(sweep, started, rc)
    log.info(
        "%s: exit %d after %.0f s (parent run %s)",
        sweep.name,
        rc,
        entry["seconds"],
        entry["parent_run_id"],
    )
    return entry


# --- the Optuna side ------------------------------------------------------------------------
def optuna_study(name):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{STATE_DIR}/optuna.db")
    except KeyError:
        return None


INTERRUPTED = "study.interrupted"


def trials_left(name, mark=True):
    """Trials the search `name` still lacks. A trial left RUNNING by a killed sweep never
    reports: it is marked FAIL and `study.interrupted`, and does not count, so every family
    gets its `SEARCH_TRIALS` (a trial that diverged does count: it ran its course)."""
    from optuna.trial import TrialState

    study = optuna_study(name)
    if study is None:
        return SEARCH_TRIALS
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running if mark else ():
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    counted = [t for t in study.trials if not t.user_attrs.get(INTERRUPTED)]
    if not mark:  # a look only: the running ones may be a live sweep's
        counted = [t for t in counted if t.state != TrialState.RUNNING]
    return max(0, SEARCH_TRIALS - len(counted))


def best_settings(setup, family):
    """The best trial's settings ({key: value}) of a family's search; {} with nothing to
    search; None while the search has no finished trial."""
    f = FAMILIES[family]
    if not f.rate and not f.space:
        return {}
    study = optuna_study(search_name(setup, family))
    from optuna.trial import TrialState

    if study is None or not study.get_trials(states=(TrialState.COMPLETE,)):
        return None
    return dict(study.best_trial.params)


# --- what to run next -----------------------------------------------------------------------
def after_search(setup):
    """The setup's train sweeps once its searches are done, in running order (lazy: the long
    runs' families come from the retrains before them):

    - the longest retrain of the `auto` families and of the tuned ones they are measured
      against, then the range test's other rules: the evidence for the rule choice first;
    - the longest retrain of the other families (they choose the long runs' families);
    - the shorter retrain budgets; the long runs.
    """
    auto = [f for f in FAMILIES if FAMILIES[f].twin]
    compared = [*(FAMILIES[f].twin for f in auto), *auto]
    first, rest = max(BUDGETS), sorted(BUDGETS)[:-1]
    order = [*compared, *(f for f in FAMILIES if f not in compared)]
    for family, budget in [(f, first) for f in compared]:
        yield from _retrain(setup, family, budget)
    for family in auto:
        best = best_settings(setup, family)
        for rule in OTHER_RULES:
            if best is not None:
                yield train_sweep(f"rules-{rule}", setup, family, first, best, False)
    for family in order[len(compared) :]:
        yield from _retrain(setup, family, first)
    for budget in rest:
        for family in order:
            yield from _retrain(setup, family, budget)
    from bench.study_report import rank

    for family in rank(setup)[:LONG_FAMILIES]:
        best = best_settings(setup, family)
        for budget in LONG_BUDGETS:
            yield train_sweep("long", setup, family, budget, best, budget == max(LONG_BUDGETS))


def _retrain(setup, family, budget):
    best = best_settings(setup, family)
    sweep = train_sweep("retrain", setup, family, budget, best or {}, budget == max(BUDGETS))
    if best is None:
        log.warning("%s: its search finished no trial; left out", sweep.name)
        return
    yield sweep


def still_to_run(look_only=True):
    """Every sweep not yet done, in running order, as far as the results so far decide them
    (lazy: the long runs' families come from the 3-epoch retrains). `look_only`: start and
    change nothing (a study may be running); else a search found complete is recorded, and
    trials a killed sweep left running are marked (`trials_left`)."""
    done = finished()
    for setup, s in SETUPS.items():
        recipe = train_sweep("recipe", setup, "recipe", 10, {}, curve=True)
        if recipe.name not in done:
            yield recipe
        for family, f in FAMILIES.items():
            name = search_name(setup, family)
            if (f.rate or f.space) and name not in done:
                left = trials_left(name, mark=not look_only)
                if left:
                    yield search_sweep(setup, family, left)
                elif not look_only:
                    record(Sweep("search", setup, family, s.search_epochs, ()), time.time(), 0)
        yield from (sweep for sweep in after_search(setup) if sweep.name not in done)


def next_sweep():
    """The next sweep of the study, or None when it is complete."""
    return next(still_to_run(look_only=False), None)


def runs_of(phase):
    """How many runs a sweep of `phase` trains."""
    return SEARCH_TRIALS if phase == "search" else len(SEEDS)


def seconds_per_epoch():
    """{setup: wall seconds per run-epoch} of the sweeps done (start-up included)."""
    seconds, epochs = {}, {}
    for r in finished().values():
        if r["rc"] == 0 and r["seconds"] > 0:
            seconds[r["setup"]] = seconds.get(r["setup"], 0) + r["seconds"]
            epochs[r["setup"]] = epochs.get(r["setup"], 0) + runs_of(r["phase"]) * r["budget"]
    return {setup: seconds[setup] / epochs[setup] for setup in seconds}


def plan():
    """Log the sweeps still to run, each with its estimated time, and the total."""
    rate, total = seconds_per_epoch(), 0.0
    for sweep in still_to_run():
        estimate = rate.get(sweep.setup, 0) * runs_of(sweep.phase) * sweep.budget
        total += estimate
        log.info("to run: %s (about %.0f min)", sweep.name, estimate / 60)
    log.info("about %.1f h of sweeps still to run (at the pace of those done)", total / 3600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="only write the results")
    parser.add_argument("--plan", action="store_true", help="only list what is left to run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    STUDY_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    if args.plan:
        plan()
        return
    if not args.report:
        while (sweep := next_sweep()) is not None:
            launch(sweep)
    from bench.study_report import report

    report()


if __name__ == "__main__":
    main()
