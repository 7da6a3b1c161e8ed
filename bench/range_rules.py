"""The range test's suggestion rules against the rates the schedule study tuned: which rule
suits which key, and what the sweep's resolution and smoothing do to each (issue 13).

    python bench/range_rules.py     # runs the range tests it lacks (about 3 min), reports

Per classic setup, `python -m trainer -m mode=lr_find experiment=<preset>` with seeds 1..5
at `lr_find.num_steps` 200 (the default) and 400 (in outputs/range_rules/). Each run's batch
losses (its lr_find.csv) are smoothed again with beta 0.9, 0.95, 0.98 (the default) and 0.99
(`trainer.lr_find.smooth`; a sweep that stopped at divergence keeps its length) and each
rule's suggestion is taken (`trainer.lr_find.suggest`). Reported per setting and rule: the
suggestion per seed, their median and spread (largest / smallest), and the median over the
tuned rate of the study's `cosine` and `one_cycle` searches (bench/results/study.json).

Results: bench/results/range_rules.json; docs/lr_find.md quotes them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainer.data import data_root  # noqa: E402

os.environ.setdefault("LRLAB_DATA_DIR", str(data_root(base=ROOT)))  # as python -m trainer

log = logging.getLogger("bench.range_rules")
RUNS = ROOT / "outputs" / "range_rules"
RESULTS = ROOT / "bench" / "results" / "range_rules.json"
SETUPS = {"fashion_mlp": "fashion_mlp_sgd", "mnist_cnn": "mnist_cnn_cosine"}
SEEDS = (1, 2, 3, 4, 5)
NUM_STEPS = (200, 400)
SMOOTHING = (0.9, 0.95, 0.98, 0.99)
TWINS = ("cosine", "one_cycle")  # the tuned families whose rate `auto` stands in for


def run_missing(preset):
    """The range tests of `preset` not yet on disk, as one Hydra sweep (CSV sink only)."""
    folder = RUNS / preset
    if not missing(folder):
        return
    command = [
        sys.executable,
        "-m",
        "trainer",
        "-m",
        "mode=lr_find",
        f"experiment={preset}",
        "sink=[csv]",
        "trainer.seed=" + ",".join(map(str, SEEDS)),
        "lr_find.num_steps=" + ",".join(map(str, NUM_STEPS)),
        f"hydra.sweep.dir={folder}",
        "hydra.sweep.subdir=${trainer.seed}-${lr_find.num_steps}",
    ]
    log.info("%s", " ".join(command[1:]))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "sweep.log").open("a") as out:
        subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if lacking := missing(folder):  # a sweep goes on past a failed run: say which and why
        raise SystemExit(
            f"bench/range_rules.py: the range test left no {lacking[0]} (and {len(lacking) - 1} "
            f"more); its log: {folder / 'sweep.log'}"
        )


def missing(folder):
    """The range tests' CSV files not yet in `folder`."""
    files = [folder / f"{s}-{n}" / "lr_find.csv" for s in SEEDS for n in NUM_STEPS]
    return [f for f in files if not f.exists()]


def tuned_rates(setup):
    """{family: the best searched peak rate} of the study's tuned twins."""
    study = json.loads((ROOT / "bench" / "results" / "study.json").read_text())
    families = study["setups"].get(setup, {}).get("families", {})
    out = {}
    for family in TWINS:
        best = families.get(family, {}).get("search", {}).get("best_settings", {})
        if "optimizer.learning_rate" in best:
            out[family] = best["optimizer.learning_rate"]
    return out


def analyse(setup, preset):
    from trainer.choices import SUGGESTION_RULES
    from trainer.lr_find import smooth, suggest

    tuned = tuned_rates(setup)
    settings = []
    for num_steps in NUM_STEPS:
        curves = []
        for seed in SEEDS:
            table = np.loadtxt(
                RUNS / preset / f"{seed}-{num_steps}" / "lr_find.csv", delimiter=",", skiprows=1
            )
            curves.append((table[:, 0], table[:, 1]))
        for beta in SMOOTHING:
            found = {rule: [] for rule in SUGGESTION_RULES}
            for lrs, losses in curves:
                for rule, value in suggest(lrs, smooth(losses, beta)).items():
                    found[rule].append(value)
            rules = {}
            for rule, values in found.items():
                median = float(np.median(values))
                rules[rule] = {
                    "per_seed": values,
                    "median": median,
                    "spread": float(max(values) / min(values)),
                    **{f"over_tuned_{f}": median / rate for f, rate in tuned.items()},
                }
            settings.append({"num_steps": num_steps, "smoothing": beta, "rules": rules})
    return {"preset": preset, "seeds": list(SEEDS), "tuned": tuned, "settings": settings}


def table(setup, result):
    tuned = result["tuned"]
    head = " | ".join(f"/ tuned {f} ({rate:.2g})" for f, rate in tuned.items())
    lines = [
        f"{setup}: median suggestion over seeds {result['seeds']} (spread = largest / smallest)",
        f"| num_steps | smoothing | rule | median | spread | {head} |",
        "|---|---|---|---|---|" + "---|" * len(tuned),
    ]
    for s in result["settings"]:
        for rule, r in s["rules"].items():
            ratios = " | ".join(f"{r[f'over_tuned_{f}']:.2f}" for f in tuned)
            lines.append(
                f"| {s['num_steps']} | {s['smoothing']} | {rule} | {r['median']:.2g} | "
                f"{r['spread']:.1f} | {ratios} |"
            )
    return "\n".join(lines)


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = {"setups": {}}
    for setup, preset in SETUPS.items():
        run_missing(preset)
        out["setups"][setup] = analyse(setup, preset)
        log.info("\n%s", table(setup, out["setups"][setup]))
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    log.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
