"""`--help`, `--cfg job` and config errors answer without importing TensorFlow."""

import subprocess
import sys

import pytest

from tests.project import ROOT


def imported_modules(app, *args):
    # -X importtime lists every module the interpreter imported, on stderr.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", app, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {
        line.split("|")[-1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    }
    return out, modules


@pytest.mark.parametrize(
    "app,args,returncode,says",
    [
        ("trainer", ["--help"], 0, "python -m trainer: train the MNIST"),
        ("trainer", ["--cfg", "job"], 0, "learning_rate: 0.001"),
        ("trainer", ["trainer.epochs=0"], 2, "trainer.epochs must be a whole number >= 1"),
        ("trainer", ["schedule=cosin"], 2, "did you mean schedule=cosine?"),
        ("schedules", ["--help"], 0, "python -m schedules: preview"),
        ("schedules", ["schedule=cosin"], 2, "did you mean schedule=cosine?"),
    ],
)
def test_answers_without_tensorflow(app, args, returncode, says):
    out, modules = imported_modules(app, *args)
    assert "hydra" in modules
    assert "tensorflow" not in modules and "keras" not in modules, args
    assert out.returncode == returncode
    assert says in out.stdout + out.stderr


def test_trainer_help_lists_only_its_groups():
    out, _ = imported_modules("trainer", "--help")
    groups = [x.split(":")[0].strip() for x in out.stdout.splitlines() if x.startswith("  ")]
    groups = [g for g in groups if g and " " not in g][:14]
    assert groups == [
        "task",
        "dataset",
        "model",
        "optimizer",
        "schedule",
        "warmup",
        "plateau",
        "trainer",
        "tracking",
        "sink",
        "callbacks",
        "lr_find",
        "experiment",
        "sweep",
    ]
    assert "powered by Hydra" not in out.stdout
