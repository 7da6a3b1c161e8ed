"""`--help`, `--cfg job` and config errors answer without importing TensorFlow."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def imported_modules(*args):
    # -X importtime lists every module the interpreter imported, on stderr.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainer", *args],
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
    "args", [["--help"], ["--cfg", "job"], ["trainer.epochs=0"], ["schedule=cosin"]]
)
def test_answers_without_tensorflow(args):
    out, modules = imported_modules(*args)
    assert "hydra" in modules
    assert "tensorflow" not in modules and "keras" not in modules, args
    if args[0].startswith("--"):
        assert out.returncode == 0
    else:
        assert out.returncode != 0 and (
            "trainer.epochs must be" in out.stderr
            or "Could not find 'schedule/cosin'" in out.stderr
        )
