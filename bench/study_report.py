"""The study's results, read back from its MLflow store: `bench/results/study.json`, the
tables of `docs/results.md` (between its markers) and the plots in `docs/img/`.

Every number comes from the runs of the sweeps in `bench/results/study/progress.jsonl`: a
run's final `test/accuracy` and `val/accuracy` (its last `epoch/val_accuracy`), its test
curve (`test/accuracy` at every `trainer.test_every`), `train/lr` per step, and its time.
The report also brings the committed archive of the runs (`bench/study_archive.py`) up to
date, where the doc's parent runs open by name.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import defaultdict

from bench.study import (
    BASE_RULE,
    BUDGETS,
    FAMILIES,
    INTERRUPTED,
    LONG_BUDGETS,
    OTHER_RULES,
    ROOT,
    SEARCH_TRIALS,
    SETUPS,
    STATE_DIR,
    STUDY_DIR,
    cached_runs,
    finished,
    optuna_study,
    search_name,
)
from bench.study_archive import archive

log = logging.getLogger("bench.study")
RESULTS = ROOT / "bench" / "results" / "study.json"
RUNS = STATE_DIR / "runs.jsonl"
DOC = ROOT / "docs" / "results.md"
IMG = ROOT / "docs" / "img"
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"
USER_KEYS = ("experiment=", "schedule", "optimizer.", "warmup", "trainer.epochs=")


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{STUDY_DIR}/mlflow.db")


def children(client, parent_run_id):
    """The trial runs of a sweep's parent run (a range test's runs hang under its trial)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.mlflow.parentRunId = '{parent_run_id}'")


def run_facts(client, run):
    """What the report needs of one finished training run."""
    metrics, params = run.data.metrics, run.data.params
    curve = sorted(
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test/accuracy")
    )
    val = sorted(
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epoch/val_accuracy")
    )
    lr = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/lr"))
    seconds = (run.info.end_time - run.info.start_time) / 1000 - metrics.get(
        "time/test_curve_s", 0.0
    )
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "seed": int(params.get("trainer.seed", -1)),
        "test_accuracy": metrics.get("test/accuracy"),
        "val_accuracy": val[-1][1] if val else None,
        "steps": curve[-1][0] if curve else None,
        "curve": curve if len(curve) > 1 else None,
        "seconds": round(seconds, 1),
        "suggested_lr": float(run.data.tags.get("lrlab.lr_find.suggested_lr", "nan")),
        # For the plots, of the runs with a test curve: about 200 of its steps.
        "lr": lr[:: max(1, len(lr) // 200)] if len(curve) > 1 else None,
    }


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def collect():
    """{setup: {(phase, family, budget): {"parent_run_id", "runs": [facts]}}} of the
    train sweeps done, and {setup: {family: [search records]}}."""
    client = _client()
    trained, searched = defaultdict(dict), defaultdict(lambda: defaultdict(list))
    cached = cached_runs(RUNS)
    for entry in finished().values():
        if entry["phase"] == "search":
            searched[entry["setup"]][entry["family"]].append(entry)
            continue
        runs = cached.get(entry["parent_run_id"])
        if runs is None:  # read once from MLflow, then kept with the study's state
            runs = [run_facts(client, r) for r in children(client, entry["parent_run_id"])]
            if not runs:  # not in this MLflow store (run elsewhere): nothing to keep
                log.warning("%s: its runs are in no store here; left out", entry["name"])
                continue
            with RUNS.open("a") as f:
                f.write(json.dumps({"parent_run_id": entry["parent_run_id"], "runs": runs}) + "\n")
        key = (entry["phase"], entry["family"], entry["budget"])
        trained[entry["setup"]][key] = {
            "name": entry["name"],
            "parent_run_id": entry["parent_run_id"],
            "runs": [r for r in runs if r["status"] == "FINISHED"],
            "failed": sum(r["status"] == "FAILED" for r in runs),  # diverged
        }
    return trained, searched


def rank(setup):
    """The families of `setup` by mean val/accuracy of their 3-epoch retrain, best first
    (the test set chooses nothing); a diverged run counts as chance (0.1)."""
    trained, _ = collect()
    scores = {}
    for (phase, family, budget), sweep in trained[setup].items():
        if phase == "retrain" and budget == max(BUDGETS):
            values = [r["val_accuracy"] for r in sweep["runs"]] + [0.1] * sweep["failed"]
            if values:
                scores[family] = statistics.fmean(values)
    return sorted(scores, key=scores.get, reverse=True)


def mean_curve(runs):
    """[(step, mean test accuracy)] over the seeds at the steps all of them logged."""
    curves = [dict(r["curve"]) for r in runs if r["curve"]]
    if not curves:
        return []
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return [(s, statistics.fmean(c[s] for c in curves)) for s in steps]


def first_reach(curve, target):
    return next((step for step, value in curve if value >= target - 1e-9), None)


def overrides_of(entry_overrides, seed):
    """The user's command for one run of a study sweep: the preset, the schedule settings,
    the epochs and the seed (not the study's store and bookkeeping)."""
    out = [
        o for o in entry_overrides if o.startswith(USER_KEYS) and not o.startswith("trainer.seed")
    ]
    return [*out, f"trainer.seed={seed}"]


def summarise(setup, trained, searched):
    s = SETUPS[setup]
    sweeps = trained.get(setup, {})
    recipe = sweeps.get(("recipe", "recipe", 10))
    out = {"preset": s.preset, "classic_stated": s.classic, "families": {}}
    target = None
    if recipe and recipe["runs"]:
        acc = mean_std(r["test_accuracy"] for r in recipe["runs"])
        curve = mean_curve(recipe["runs"])
        target = acc["mean"]
        out["recipe"] = {
            "test_accuracy_10ep": acc,
            "parent_run_id": recipe["parent_run_id"],
            "sweep": recipe["name"],
            "steps_to_target": first_reach(curve, target),
            "seconds": mean_std(r["seconds"] for r in recipe["runs"]),
        }
    out["target"] = target
    progress = finished()
    for family in FAMILIES:
        searches = searched.get(setup, {}).get(family, [])
        fam = {
            "search_parent_run_ids": [e["parent_run_id"] for e in searches if e["parent_run_id"]]
        }
        study = optuna_study(search_name(setup, family)) if searches else None
        if study is not None:
            from optuna.trial import TrialState

            states = [t.state for t in study.trials if not t.user_attrs.get(INTERRUPTED)]
            fam["search"] = {
                "trials": len(states),
                "pruned": states.count(TrialState.PRUNED),
                "failed": states.count(TrialState.FAIL),
                "best_val_accuracy": study.best_value if TrialState.COMPLETE in states else None,
                "best_settings": study.best_trial.params if TrialState.COMPLETE in states else None,
            }
        budgets, curves = {}, {}
        for budget in (*BUDGETS, *LONG_BUDGETS):
            phase = "retrain" if budget in BUDGETS else "long"
            sweep = sweeps.get((phase, family, budget))
            if not sweep or not (sweep["runs"] or sweep["failed"]):
                continue
            budgets[str(budget)] = {
                "diverged": sweep["failed"],
                "test_accuracy": mean_std(r["test_accuracy"] for r in sweep["runs"]),
                "val_accuracy": mean_std(r["val_accuracy"] for r in sweep["runs"]),
                "seconds": mean_std(r["seconds"] for r in sweep["runs"]),
                "seeds": {r["seed"]: r["test_accuracy"] for r in sweep["runs"]},
                "parent_run_id": sweep["parent_run_id"],
            }
            curve = mean_curve(sweep["runs"])
            if curve:
                curves[budget] = curve
        fam["budgets"] = budgets
        if target is not None and curves:
            reached = {b: first_reach(c, target) for b, c in curves.items()}
            reached = {b: step for b, step in reached.items() if step is not None}
            if reached:
                budget = min(reached, key=reached.get)
                fam["steps_to_target"] = {"steps": reached[budget], "in_run_of_epochs": budget}
        out["families"][family] = fam
    out["rules"] = rules(sweeps, out)
    # The winner: the best mean val/accuracy at the longest budget run (test chooses nothing).
    longest = {
        f: max(fam["budgets"], key=int) for f, fam in out["families"].items() if fam["budgets"]
    }
    if longest:
        top = max(int(b) for b in longest.values())
        contenders = {
            f: out["families"][f]["budgets"][str(top)]["val_accuracy"]["mean"]
            for f, b in longest.items()
            if int(b) == top
        }
        winner = max(contenders, key=contenders.get)
        phase = "retrain" if top in BUDGETS else "long"
        entry = next(
            e
            for e in progress.values()
            if (e["setup"], e["phase"], e["family"], e["budget"]) == (setup, phase, winner, top)
        )
        seed = 1
        out["winner"] = {
            "family": winner,
            "epochs": top,
            "overrides": overrides_of(entry["overrides"], seed),
            "test_accuracy": out["families"][winner]["budgets"][str(top)]["seeds"].get(seed),
            "test_accuracy_mean": out["families"][winner]["budgets"][str(top)]["test_accuracy"],
            "parent_run_id": entry["parent_run_id"],
            "sweep": entry["name"],
        }
    return out


def rules(sweeps, out):
    """What each range-test rule is worth: per `auto` family and rule, the rate it chose
    and the 3-epoch test accuracy, against the tuned twin family at the same budget."""
    budget = max(BUDGETS)
    found = {}
    for family, twin in ((f, FAMILIES[f].twin) for f in FAMILIES if FAMILIES[f].twin):
        tuned = out["families"].get(twin, {}).get("budgets", {}).get(str(budget))
        for rule in (BASE_RULE, *OTHER_RULES):
            phase = "retrain" if rule == BASE_RULE else f"rules-{rule}"
            sweep = sweeps.get((phase, family, budget))
            if not sweep or not sweep["runs"]:
                continue
            acc = mean_std(r["test_accuracy"] for r in sweep["runs"])
            found[f"{family}/{rule}"] = {
                "suggested_lr": mean_std(r["suggested_lr"] for r in sweep["runs"]),
                "test_accuracy": acc,
                "tuned": tuned,
                "points_below_tuned": 100 * (tuned["test_accuracy"]["mean"] - acc["mean"])
                if tuned and tuned["test_accuracy"] and acc
                else None,
                "parent_run_id": sweep["parent_run_id"],
            }
    return found


def report():
    trained, searched = collect()
    results = {
        "setups": {setup: summarise(setup, trained, searched) for setup in SETUPS},
        "search_trials_per_family": SEARCH_TRIALS,
        "families": {
            name: {"fixed": list(f.fixed), "space": f.space, "rate_searched": f.rate}
            for name, f in FAMILIES.items()
        },
        "rate_space": {setup: s.rate_space for setup, s in SETUPS.items()},
        "study_seconds": round(sum(e["seconds"] for e in finished().values()), 1),
    }
    RESULTS.write_text(json.dumps(results, indent=1, default=str))
    log.info("wrote %s (%.1f h of sweeps)", RESULTS, results["study_seconds"] / 3600)
    write_doc(tables(results))
    plot(trained, results)
    archive()  # last: the tables and plots are written even where the archive is not
    return results


def pct(found):
    if not found:
        return ""
    return f"{100 * found['mean']:.2f} ± {100 * found['std']:.2f}"


def cell(budget):
    """A table cell: mean ± std of the finished seeds, and how many diverged."""
    if not budget:
        return ""
    text = pct(budget["test_accuracy"]) or "—"
    if budget.get("diverged"):
        text += f" ({budget['diverged']} of {budget['diverged'] + len(budget['seeds'])} diverged)"
    return text


def settings_text(family, fam):
    best = (fam.get("search") or {}).get("best_settings")
    # The `auto` rows' rate: the range test's suggestion by the rule the study pinned.
    parts = [f"rate from the range test ({BASE_RULE})"] if FAMILIES[family].twin else []
    if not best and not parts:
        return "—"
    for key, value in (best or {}).items():
        short = key.split(".")[-1]
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return ", ".join(parts)


def tables(results):
    lines = []
    for setup, out in results["setups"].items():
        target = out.get("target")
        lines += [f"### {setup} (`experiment={out['preset']}`)", ""]
        if "recipe" in out:
            r = out["recipe"]
            lines.append(
                f"The recipe as it is, 10 epochs, seeds 1-3: **{pct(r['test_accuracy_10ep'])} %** "
                f"test accuracy (stated: {100 * out['classic_stated']:.2f} %), "
                f"{r['seconds']['mean']:.0f} s a run; parent run `{r['sweep']}`. "
                f"Time-to-accuracy below counts the steps until the mean test curve of a "
                f"schedule first reaches {100 * target:.2f} %; the recipe's own curve reaches it "
                f"at step {r['steps_to_target']}."
            )
            lines.append("")
        lines += [
            "| schedule | best settings (search at 2 epochs) | 1 ep | 2 ep | 3 ep | 5 ep | 10 ep "
            "| steps to the recipe's accuracy | speed-up | s per 3-ep run |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        recipe_steps = (out.get("recipe") or {}).get("steps_to_target")
        for family, fam in out["families"].items():
            b = fam["budgets"]
            reach = fam.get("steps_to_target")
            speed = ""
            if reach and recipe_steps:
                speed = f"{recipe_steps / reach['steps']:.1f}x"
            reach_text = (
                f"{reach['steps']} ({reach['in_run_of_epochs']}-ep run)" if reach else "not reached"
            )
            seconds = b.get("3", {}).get("seconds")
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"`{family}`",
                        settings_text(family, fam),
                        *(cell(b.get(str(e))) for e in (1, 2, 3, 5, 10)),
                        reach_text if b else "",
                        speed,
                        f"{seconds['mean']:.0f}" if seconds else "",
                    ]
                )
                + " |"
            )
        lines.append("")
        if out.get("rules"):
            lines += [
                f"The range test's rules at {max(BUDGETS)} epochs (mean of 3 seeds), against the "
                "tuned twin (`one_cycle`, `cosine`) at the same budget:",
                "",
                "| `auto` run | rule | rate chosen (mean) | test accuracy | tuned twin "
                "| below it |",
                "|---|---|---|---|---|---|",
            ]
            for name, r in out["rules"].items():
                family, rule = name.split("/")
                below = r["points_below_tuned"]
                lines.append(
                    f"| `{family}` | {rule} | {r['suggested_lr']['mean']:.3g} | "
                    f"{pct(r['test_accuracy'])} | {cell(r['tuned'])} | "
                    + (f"{below:+.2f} points |" if below is not None else " |")
                )
            lines.append("")
        if "winner" in out:
            w = out["winner"]
            lines.append(
                f"Winner on validation: `{w['family']}` at {w['epochs']} epochs, "
                f"{pct(w['test_accuracy_mean'])} % test accuracy over 3 seeds; parent run "
                f"`{w['sweep']}`. To reproduce seed 1 "
                f"({100 * (w['test_accuracy'] or 0):.2f} %): "
                f"`python -m trainer {' '.join(w['overrides'])}`"
            )
            lines.append("")
    lines.append(
        f"{results['search_trials_per_family']} search trials per family; "
        f"{results['study_seconds'] / 3600:.1f} hours of sweeps in all."
    )
    return "\n".join(lines)


def write_doc(text):
    if not DOC.exists():
        log.warning("%s missing; tables not written", DOC)
        return
    doc = DOC.read_text()
    if BEGIN not in doc:
        log.warning("no %s marker in %s; tables not written", BEGIN, DOC)
        return
    head, rest = doc.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


def plot(trained, results):
    """Per setup: the mean test curves of the recipe and the families run long, and the
    rates they used (seed 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for setup, out in results["setups"].items():
        sweeps = trained.get(setup, {})
        shown = [("recipe", ("recipe", "recipe", 10))]
        for family, fam in out["families"].items():
            if fam["budgets"]:
                top = max(fam["budgets"], key=int)
                if int(top) in LONG_BUDGETS:
                    shown.append((family, ("long", family, int(top))))
        shown = [(name, key) for name, key in shown if key in sweeps and sweeps[key]["runs"]]
        if len(shown) < 2:
            continue
        fig, (acc_ax, lr_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, key in shown:
            runs = sweeps[key]["runs"]
            curve = mean_curve(runs)
            if curve:
                acc_ax.plot(*zip(*curve), marker=".", label=f"{name} ({key[2]} ep)")
            lr = min(runs, key=lambda r: r["seed"])["lr"]
            if lr:
                lr_ax.plot(*zip(*lr), label=name)
        if out.get("target"):
            acc_ax.axhline(out["target"], color="grey", linestyle="--", linewidth=0.8)
        low = out["target"] - 0.03 if out.get("target") else None
        acc_ax.set(xlabel="step", ylabel="test accuracy (mean of 3 seeds)", ylim=(low, None))
        top_lr = max(line.get_ydata().max() for line in lr_ax.get_lines())
        lr_ax.set(xlabel="step", ylabel="learning rate (seed 1)", yscale="log")
        lr_ax.set_ylim(top_lr / 1e3, top_lr * 2)  # cosine's last steps near 0 say nothing
        acc_ax.legend(fontsize=8)
        lr_ax.legend(fontsize=8)
        fig.suptitle(f"{setup}: test accuracy and learning rate against steps")
        fig.tight_layout()
        fig.savefig(IMG / f"study_{setup}.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":  # python -m bench.study_report: the same as study.py --report
    logging.basicConfig(level=logging.INFO)
    report()
