"""Bad input through the real commands: a few lines that name the key or file, and no run.

Every case runs `python -m trainer` or `python -m schedules` as a user does and checks that
it exits with status 2 in at most 10 lines naming what was wrong, with no traceback and no
MLflow run left behind; cases that need no TensorFlow must not import it (so they answer
in well under 2 s: `bench/error_latency.py` times them).
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from tests.project import DATASETS, ROOT

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass
class Case:
    name: str
    args: list
    expected: list  # substrings of the output
    tensorflow: bool = False  # whether finding the error needs TensorFlow
    app: str = "trainer"
    env: dict = field(default_factory=dict)
    data: str | None = None  # a broken copy of MNIST to point dataset.dir at
    files: dict = field(default_factory=dict)  # {path under the working folder: text}

    @property
    def before_data(self):
        """Schedule, optimizer and model errors must come before the data is loaded."""
        return self.app == "trainer" and self.data is None and "dataset" not in str(self.args)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [
    # Config groups, keys and types: answered before TensorFlow.
    Case(
        "unknown schedule", ["schedule=cosin"], ["schedule=cosin", "did you mean schedule=cosine"]
    ),
    Case("unknown model", ["model=resnet"], ["model=resnet: no such option", "cnn, mlp"]),
    # Overrides Hydra's grammar refuses: the argument named, and how to write it.
    Case(
        "unquoted non-ASCII value",
        ["tracking.experiment=实验"],
        [
            "'tracking.experiment=实验' is not an override Hydra can read",
            """'tracking.experiment="实验"'""",
        ],
    ),
    Case(
        "unclosed list",
        ["schedule=piecewise", "schedule.boundaries=[100,200"],
        ["'schedule.boundaries=[100,200' is not an override Hydra can read", "override_grammar"],
    ),
    # Input that would train the wrong thing, or nothing for minutes.
    Case(
        "sweep preset without -m",
        ["sweep=clr_optuna"],
        ["sweep=clr_optuna is a search preset", "fix: add -m: python -m trainer -m sweep="],
    ),
    Case(
        "batch larger than the split",
        ["trainer.batch_size=10000000"],
        ["trainer.batch_size must be at most the training split (55000 images", "fix:"],
    ),
    # What Hydra reads or makes before any of our code runs.
    Case(
        "YAML syntax error in an experiment",
        ["hydra.searchpath=[file://{tmp}/myconf]", "+experiment=broken"],
        ["myconf/experiment/broken.yaml, line 3, column 1: not valid YAML", "expected ','"],
        files={"myconf/experiment/broken.yaml": "# @package _global_\nschedule: [oops\n"},
    ),
    Case(
        "run folder that cannot be made",
        ["hydra.run.dir=/proc/lrlab-run"],
        ["hydra.run.dir=/proc/lrlab-run: the folder cannot be made", "fix: choose a folder"],
    ),
    Case(
        "run folder under a file",
        ["hydra.run.dir=notes.txt/run"],
        ["notes.txt is a file, not a folder"],
        files={"notes.txt": "mine"},
    ),
    Case("unknown key", ["trainer.epoch=3"], ["trainer.epoch", "did you mean trainer.epochs?"]),
    Case("unknown key added", ["+trainer.epoch=1"], ["did you mean trainer.epochs?"]),
    Case("unknown nested key", ["tracking.flush_every=10"], ["tracking.flush_every_steps"]),
    Case("unknown top key", ["+epochs=3"], ["epochs is not a config key", "trainer.epochs?"]),
    Case("new class argument", ["optimizer.amsgrad=true"], ["add it with +optimizer.amsgrad"]),
    Case(
        "existing key added",
        ["+optimizer.learning_rate=0.01"],
        ["exists already", "optimizer.learning_rate=0.01"],
    ),
    Case("wrong type", ["trainer.epochs=abc"], ["trainer.epochs must be a whole number"]),
    Case("zero batch", ["trainer.batch_size=0"], ["Received: trainer.batch_size=0"]),
    Case("bad choice", ["trainer.jit_compile=maybe"], ["trainer.jit_compile must be auto"]),
    Case("bad mode", ["mode=fit"], ["mode must be train or lr_find"]),
    Case(
        "unknown backend",
        ["backend=jaxx"],
        ["backend must be one of tensorflow, jax, torch or auto", "backend='jaxx'", "fix:"],
    ),
    Case("negative rate", ["optimizer.learning_rate=-1"], ["optimizer.learning_rate must be"]),
    Case("text rate", ["optimizer.learning_rate=abc"], ["Received: optimizer.learning_rate='abc'"]),
    Case("range test setting", ["lr_find.smoothing=1.0"], ["lr_find.smoothing must be in [0, 1)"]),
    Case("optimized metric", ["optimized_metric=accuracy"], ["optimized_metric must be a final"]),
    # Schedule arguments: need the schedule classes (TensorFlow), come before the data.
    Case(
        "negative peak",
        ["schedule.initial_lr=-0.01"],
        [
            "schedule.initial_lr must be > 0",
            "Received: schedule.initial_lr=-0.01",
            "fix: set schedule.initial_lr=... to what it must be (> 0)",
        ],
        tensorflow=True,
    ),
    Case(
        "text peak",
        ["schedule=clr", "schedule.max_lr=abc"],
        ["schedule.max_lr must be a finite number", "schedule.max_lr='abc'"],
        tensorflow=True,
    ),
    Case(
        "peak below base",
        ["schedule=clr", "schedule.max_lr=1e-5"],
        ["schedule.max_lr must be >= base_lr"],
        tensorflow=True,
    ),
    Case(
        "decay rate above 1",
        ["schedule=exponential", "schedule.decay_rate=1.5"],
        ["schedule.decay_rate must be in (0, 1]"],
        tensorflow=True,
    ),
    Case(
        "piecewise counts",
        ["schedule=piecewise", "schedule.values=[0.1,0.01]"],
        ["schedule.values must be a list of 3 rates"],
        tensorflow=True,
    ),
    Case(
        "unknown unit",
        ["schedule=step", "schedule.step_size=3weeks"],
        ["schedule.step_size must be", "'3weeks'", "2ep"],
        tensorflow=True,
    ),
    Case(
        "negative length",
        ["schedule=step", "schedule.step_size=-1ep"],
        ["schedule.step_size", "'-1ep'"],
        tensorflow=True,
    ),
    Case(
        "unit alone",
        ["schedule=sgdr", "schedule.first_cycle_steps=ep"],
        ["schedule.first_cycle_steps", "'ep'"],
        tensorflow=True,
    ),
    Case(
        "fraction of a step",
        ["schedule=clr", "schedule.step_size=2.5"],
        ["schedule.step_size", "2.5ep"],
        tensorflow=True,
    ),
    Case(
        "warmup takes the run",
        ["schedule=one_cycle", "warmup=linear", "warmup.warmup_steps=1dur"],
        ["takes the whole run", "nothing is left for the schedule"],
        tensorflow=True,
    ),
    Case(
        "schedule key added",
        ["+schedule.min_rate=0.1"],
        ["has no key 'min_rate'", "did you mean schedule.min_lr?"],
        tensorflow=True,
    ),
    Case(
        "optimizer key added",
        ["+optimizer.learning_rat=0.1"],
        ["optimizer (keras.optimizers.Adam)", "learning_rat"],
        tensorflow=True,
    ),
    # Data: the headers are read before TensorFlow.
    Case(
        "the folder above the dataset",
        [f"dataset.dir={DATASETS}"],
        ["holds the folders", f"dataset.dir={DATASETS / 'mnist'}", "LRLAB_DATA_DIR"],
    ),
    Case("partial data", ["dataset.dir={data}"], ["not t10k-labels-idx1-ubyte"], data="partial"),
    Case("truncated data", ["dataset.dir={data}"], ["truncated or corrupt"], data="truncated"),
    Case("foreign file", ["dataset.dir={data}"], ["not an IDX file"], data="foreign"),
    Case("empty file", ["dataset.dir={data}"], ["t10k-labels-idx1-ubyte"], data="empty"),
    Case(
        "corrupt inside",
        ["dataset.dir={data}"],
        ["cannot read it as an IDX file", "fetch the file again"],
        tensorflow=True,  # only decoding the whole file finds it
        data="corrupt",
    ),
    Case(
        "no data and no network",
        ["dataset.dir={data}/nowhere"],
        ["holds no IDX files", "download", "README: Getting the data"],
        tensorflow=True,
        # The real Keras download, through a proxy that refuses, with an empty cache.
        env={"https_proxy": f"http://127.0.0.1:{_closed_port()}", "KERAS_HOME": "{tmp}/keras"},
        data="partial",
    ),
    # Tracking: checked in seconds, before TensorFlow.
    Case(
        "no server there",
        [],
        ["tracking.uri=http://127.0.0.1:", "no MLflow server answers"],
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}"},
    ),
    Case("no such host", ["tracking.uri=http://mlflow.invalid:5000"], ["mlflow.invalid:5000"]),
    Case("unknown scheme", ["tracking.uri=ftp://host/x"], ["unknown scheme 'ftp'"]),
    Case(
        "empty CA setting (MLflow would not verify)",
        ["tracking.uri=https://localhost:9"],
        ["MLFLOW_TRACKING_SERVER_CERT_PATH='' is no file", "would not check"],
        env={"MLFLOW_TRACKING_SERVER_CERT_PATH": ""},
    ),
    Case(
        "missing CA file",
        ["tracking.uri=https://localhost:9"],
        ["MLFLOW_TRACKING_SERVER_CERT_PATH=", "team-ca.pem' is no file", "fix: point it at"],
        env={"MLFLOW_TRACKING_SERVER_CERT_PATH": "{tmp}/team-ca.pem"},
    ),
    Case(
        "no such folder",
        ["tracking.uri=sqlite:////nonexistent/lrlab/mlflow.db"],
        ["/nonexistent/lrlab", "does not exist"],
    ),
    # Sinks: a list of options, each with its keys.
    Case("unknown sink", ["sink=[mlflow,tensorbord]"], ["did you mean sink=tensorboard?"]),
    Case("unknown sink key", ["sink.csv.fil=x"], ["did you mean sink.csv.file?"]),
    # The preview app.
    Case("preview: unknown schedule", ["schedule=cosin"], ["did you mean"], app="schedules"),
    Case("preview: unknown key", ["preview.step=5"], ["preview.steps?"], app="schedules"),
    Case("preview: no steps", ["preview.steps=0"], ["preview.steps must be"], app="schedules"),
    # One rule of every other family, and of the wrappers, through the preview app.
    *(
        Case(f"preview: {name}", args, [expected], tensorflow=True, app="schedules")
        for name, args, expected in [
            ("constant", ["schedule=constant", "schedule.lr=0"], "schedule.lr must be > 0"),
            (
                "inverse_time",
                ["schedule=inverse_time", "schedule.staircase=maybe"],
                "schedule.staircase must be true or false",
            ),
            (
                "polynomial",
                ["schedule=polynomial", "schedule.power=0"],
                "schedule.power must be > 0",
            ),
            (
                "one_cycle",
                ["schedule=one_cycle", "schedule.anneal_strategy=exp"],
                "schedule.anneal_strategy must be one of",
            ),
            (
                "range_test",
                ["schedule=range_test", "schedule.max_lr=1e-8"],
                "schedule.max_lr must be > min_lr",
            ),
            (
                "sequence",
                ["schedule=sequence", "schedule.boundaries=[0]"],
                "schedule.boundaries must be > 0",
            ),
            ("warmup", ["warmup=linear", "warmup.start_lr=-1"], "warmup.start_lr must be >= 0"),
            (
                "plateau",
                ["plateau=reduce", "plateau.factor=1.5"],
                "plateau.factor must be in (0, 1)",
            ),
        ]
    ),
    Case(
        "preview: unknown unit",
        ["schedule=step", "schedule.step_size=3weeks"],
        ["schedule.step_size must be"],
        tensorflow=True,
        app="schedules",
    ),
]


def broken_copy(kind, folder):
    """A copy of MNIST's four files in `folder`, broken in the way `kind` names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(DATASETS / "mnist" / name, folder / name)
    target = folder / FILES[0]
    if kind == "partial":
        (folder / FILES[3]).unlink()
    elif kind == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif kind == "foreign":
        (folder / FILES[1]).unlink()
        (folder / FILES[1].removesuffix(".gz")).write_bytes(b"<html>not found</html>")
    elif kind == "empty":
        (folder / FILES[3]).write_bytes(b"")
    elif kind == "corrupt":
        # Flip bytes in the middle of the compressed stream; header and size stay right.
        data = bytearray(target.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        target.write_bytes(bytes(data))
        with gzip.open(target) as f:
            assert f.read(16)  # the header still reads
    return folder


def run_case(case, tmp_path):
    """(completed process, output lines without -X importtime's, imported modules, seconds)."""
    data = broken_copy(case.data, tmp_path / "data") if case.data else None
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    args = [a.replace("{data}", str(data)).replace("{tmp}", str(tmp_path)) for a in case.args]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    }
    env.update(LRLAB_DATA_DIR=str(DATASETS))
    if not case.tensorflow:
        # Nothing captured: were TensorFlow imported, -X importtime would show it.
        env["LRLAB_TF_LOGS"] = "1"
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()})
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", case.app, *args],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    err_lines, modules = [], set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:"):
            modules.add(line.split("|")[-1].strip())
        else:
            err_lines.append(line)
    lines = [line for line in out.stdout.splitlines() + err_lines if line.strip()]
    return out, lines, modules, seconds


# Cases that must import Keras to find the error take 5 to 8 s each (a process that loads
# TensorFlow): the default run keeps one of each kind (a schedule's argument, a length, a
# data file, the preview app); the rest, with the same assertions, run with `-m slow` (CI).
FAST_WITH_KERAS = {"negative peak", "negative length", "corrupt inside", "preview: constant"}


def _marked(case):
    slow = case.tensorflow and case.name not in FAST_WITH_KERAS
    return pytest.param(case, id=case.name, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("case", [_marked(c) for c in CASES])
def test_bad_input_gets_a_few_clear_lines_and_no_run(case, tmp_path):
    out, lines, modules, _ = run_case(case, tmp_path)
    text = "\n".join(lines)
    assert out.returncode == 2, text
    assert f"python -m {case.app}: error:" in text, text
    for expected in case.expected:
        assert expected in text, text
    assert "Traceback" not in text, text
    assert len(lines) <= 10, text
    if not case.tensorflow:
        assert "tensorflow" not in modules, f"{case.name} imported TensorFlow"
    if case.before_data:
        assert "validation, " not in text, text  # the data loader's "N train, N validation"
    # No run folder is left (Hydra made one before the input was checked).
    assert not list(tmp_path.glob("outputs/*/*")), list(tmp_path.glob("outputs/*/*"))
    # No MLflow run was started: a store, if one was even created, holds no run.
    store = tmp_path / "mlflow.db"
    if store.exists():
        import sqlite3

        with sqlite3.connect(store) as db:
            assert db.execute("select count(*) from runs").fetchone()[0] == 0


def test_a_refused_run_in_a_folder_of_its_own_keeps_the_working_folder(tmp_path):
    # `hydra.run.dir=run`: the run folder's parent is the working folder, empty once the
    # refused run's folder is gone; it stays (the user's folder, and their shell's cwd).
    workdir = tmp_path / "work"
    workdir.mkdir()
    case = Case("run dir", ["hydra.run.dir=run", "schedule.initial_lr=-0.01"], [])
    out, lines, _, _ = run_case(case, workdir)
    assert out.returncode == 2, "\n".join(lines)
    assert workdir.is_dir() and not (workdir / "run").exists()


def test_the_table_is_large_enough():
    assert len(CASES) >= 25
    assert {c.app for c in CASES} == {"trainer", "schedules"}


def test_hydra_full_error_shows_the_traceback(tmp_path):
    case = Case("traceback", ["schedule=step", "schedule.step_size=3weeks"], [], app="schedules")
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "schedules", *case.args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError" in out.stderr


@pytest.fixture
def read_only_store(tmp_path):
    """A SQLite store holding one experiment, on a read-only bind mount (a read-only share,
    or a disk remounted read-only); root may mount, others skip."""
    import sqlite3

    store = tmp_path / "mlflow.db"
    db = sqlite3.connect(store)
    with db:
        db.execute("create table kept (run text)")
        db.execute("insert into kept values ('earlier run')")
    db.close()
    mounted = subprocess.run(["mount", "--bind", str(store), str(store)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"a read-only mount needs root here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(store)], check=True)
        yield store
    finally:
        subprocess.run(["umount", str(store)], check=True)


def test_a_read_only_store_is_named_before_training_and_left_as_it_was(read_only_store):
    tmp_path = read_only_store.parent
    case = Case("read-only store", [], [])
    out, lines, modules, _ = run_case(case, tmp_path)
    text = "\n".join(lines)
    assert out.returncode == 2, text
    assert f"the SQLite store {read_only_store} is read-only" in text, text
    assert "fix: make it writable" in text, text
    assert "Traceback" not in text and len(lines) <= 10, text
    assert "tensorflow" not in modules  # found in a second, not after loading
    assert not list(tmp_path.glob("outputs/*/*"))
    import sqlite3

    db = sqlite3.connect(f"file:{read_only_store}?mode=ro", uri=True)
    try:
        assert db.execute("select run from kept").fetchall() == [("earlier run",)]
    finally:
        db.close()
