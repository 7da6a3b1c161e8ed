"""The defaults matrix: every schedule family x {adam, sgd} x {MNIST CNN, Fashion-MNIST MLP}.

    python bench/defaults.py                 # all cells (about 20 minutes on 2 cores)
    python bench/defaults.py --table         # only print / write the table from the results

Each cell is `python -m trainer dataset=D model=M optimizer=O schedule=S trainer.epochs=1`
with no rate override: the schedule's rates come from the optimizer's `learning_rate`. It
runs through `trainer.run` in this process (the same code the command runs), tracked to a
throw-away SQLite store and TensorBoard as by default, on the real data. Each finished cell
is appended to `bench/results/defaults.jsonl` at once, and a rerun skips the cells already
there (delete the file to start over). The table goes between the markers in
`docs/training.md`, with the bars every cell must clear: 97.5 % for the CNN and 82 % for
the MLP after one epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from trainer.data import data_root  # noqa: E402

os.environ.setdefault("LRLAB_DATA_DIR", str(data_root(base=ROOT)))  # as python -m trainer

from hydra import compose, initialize_config_dir  # noqa: E402

import trainer.config.resolvers  # noqa: E402, F401  (${times:...} in the configs)

log = logging.getLogger("bench.defaults")
RESULTS = ROOT / "bench" / "results" / "defaults.jsonl"
DOC = ROOT / "docs" / "training.md"
BEGIN, END = "<!-- defaults-matrix:begin -->", "<!-- defaults-matrix:end -->"
SETUPS = {  # name -> (dataset, model, the bar for one epoch)
    "MNIST CNN": ("mnist", "cnn", 0.975),
    "Fashion-MNIST MLP": ("fashion_mnist", "mlp", 0.82),
}
OPTIMIZERS = ("adam", "sgd")
FAMILIES = sorted(
    p.stem for p in (ROOT / "conf" / "schedule").glob("*.yaml") if p.stem != "range_test"
)


def done():
    if not RESULTS.exists():
        return {}
    cells = {}
    for line in RESULTS.read_text().splitlines():
        cell = json.loads(line)
        cells[(cell["setup"], cell["optimizer"], cell["schedule"])] = cell
    return cells


def run_cell(setup, optimizer, schedule, workdir):
    import trainer

    dataset, model, _ = SETUPS[setup]
    choices = {"dataset": dataset, "model": model, "optimizer": optimizer, "schedule": schedule}
    name = f"{model}-{dataset}-{optimizer}-{schedule}"
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            [
                *(f"{group}={option}" for group, option in choices.items()),
                "trainer.epochs=1",
                f"output_dir={workdir}/{name}",
                f"tracking.uri=sqlite:///{workdir}/mlflow.db",
            ],
        )
    started = time.perf_counter()
    results = trainer.run(cfg, choices)
    return {
        "setup": setup,
        "optimizer": optimizer,
        "schedule": schedule,
        "peak_lr": cfg.optimizer.learning_rate,
        "test_accuracy": results["test/accuracy"],
        "test_mean_iou": results["test/mean_iou"],
        "steps": results["trained_steps"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def table(cells):
    lines = [
        "| schedule | " + " | ".join(f"{s}, {o}" for s in SETUPS for o in OPTIMIZERS) + " |",
        "|---|" + "---|" * (len(SETUPS) * len(OPTIMIZERS)),
    ]
    for family in FAMILIES:
        row = [f"`{family}`"]
        for setup, (_, _, bar) in SETUPS.items():
            for optimizer in OPTIMIZERS:
                cell = cells.get((setup, optimizer, family))
                if cell is None:
                    row.append("not run")
                    continue
                mark = "" if cell["test_accuracy"] >= bar else " **below the bar**"
                row.append(f"{cell['test_accuracy']:.2%} ({cell['wall_s']:.0f} s){mark}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_doc(text):
    doc = DOC.read_text()
    if BEGIN not in doc:
        log.warning("no %s marker in %s; table not written", BEGIN, DOC)
        return
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="only write the table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.table:
        cells = done()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as workdir:
            for setup in SETUPS:
                for optimizer in OPTIMIZERS:
                    for family in FAMILIES:
                        if (setup, optimizer, family) in cells:
                            continue
                        cell = run_cell(setup, optimizer, family, workdir)
                        cell["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
                        with RESULTS.open("a") as f:
                            f.write(json.dumps(cell) + "\n")
                        log.info("%s", cell)
    text = table(done())
    print(text)  # noqa: T201 - the benchmark's report
    write_doc(text)


if __name__ == "__main__":
    main()
