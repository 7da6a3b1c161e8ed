"""`python -m schedules`, run as a user runs it."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import schedules as S
from tests.project import ROOT, SCHEDULE_NAMES


def run(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "schedules", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "lr"]
    return np.array([int(r[0]) for r in rows[1:]]), np.array(
        [r[1] for r in rows[1:]], dtype=np.float32
    )


def test_issue_example_writes_csv_and_plot(tmp_path):
    out = run(
        "schedule=clr",
        "schedule.base_lr=0.001",
        "schedule.max_lr=0.006",
        "schedule.step_size=2000",
        "preview.steps=8000",
        "preview.csv=lr.csv",
        "preview.png=lr.png",
        "preview.log_y=true",
        f"hydra.run.dir={tmp_path}/h",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    steps, lr = read_csv(tmp_path / "lr.csv")
    assert steps.tolist() == list(range(8000))
    expected = [S.CyclicalLR(0.001, 0.006, 2000)(k).numpy() for k in (0, 1000, 2000, 4000, 7999)]
    np.testing.assert_allclose(lr[[0, 1000, 2000, 4000, 7999]], expected, rtol=1e-6)
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_multirun_previews_several_into_their_own_folders(tmp_path):
    out = run(
        "-m",
        "schedule=cosine,sgdr,clr",
        "preview.steps=3000",
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    curves = {}
    for job, name in enumerate(["cosine", "sgdr", "clr"]):
        steps, curves[name] = read_csv(tmp_path / "sweep" / str(job) / "lr.csv")
        assert len(steps) == 3000 and (tmp_path / "sweep" / str(job) / "lr.png").exists()
    assert np.all(np.diff(curves["cosine"]) <= 0) and curves["cosine"][-1] < 1e-8
    assert curves["sgdr"][1719] == np.float32(1e-3)  # restart after one epoch of 1719 steps
    # clr's half cycle is 0.25dur: 750 of the 3000 steps, so two cycles end at base_lr.
    assert curves["clr"][0] == np.float32(1e-4) and curves["clr"][750] == pytest.approx(
        1e-3, rel=1e-6
    )
    assert curves["clr"][2999] == pytest.approx(1e-4 + 9e-4 / 750, rel=1e-5)


def test_help_names_the_app_and_lists_its_own_groups(tmp_path):
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("python -m schedules: preview") and "Hydra" not in lines[0]
    groups = {
        x.split(":")[0].strip(): x.split(":", 1)[1]
        for x in lines
        if x.startswith("  ") and ":" in x
    }
    groups = {k: v for k, v in groups.items() if k in ("schedule", "optimizer", "warmup")}
    assert [s.strip() for s in groups["schedule"].split(",")] == SCHEDULE_NAMES
    assert not [x for x in lines if x.strip().startswith(("dataset:", "model:", "trainer:"))]


def test_bad_value_fails_with_a_clear_message_and_writes_nothing(tmp_path):
    out = run(
        "schedule=one_cycle",
        "schedule.pct_start=1.5",
        "preview.csv=lr.csv",
        f"hydra.run.dir={tmp_path}/h",
        cwd=tmp_path,
    )
    assert out.returncode != 0
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "schedule.pct_start must be in (0, 1). Received: schedule.pct_start=1.5" in out.stderr
    assert not (tmp_path / "lr.csv").exists()


@pytest.mark.slow
def test_runs_from_the_project_root_too(tmp_path):
    out = run(
        "schedule=step",
        "schedule.step_size=4",
        "preview.steps=12",
        f"preview.csv={tmp_path}/lr.csv",
        "preview.png=null",
        f"hydra.run.dir={tmp_path}/h",
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    _, lr = read_csv(tmp_path / "lr.csv")
    np.testing.assert_allclose(lr, np.float32(1e-3) * 0.5 ** (np.arange(12) // 4), rtol=1e-6)
