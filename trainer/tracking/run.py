"""One tracked run: the configured sinks and the writer process that feeds them, opened and
closed together.

On leaving the `with` block everything queued is written and every sink closes the run as
FINISHED, FAILED (an exception, or a non-finite loss) or KILLED (Ctrl-C).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainer.config.errors import ConfigError
from trainer.tracking.process import process_tags
from trainer.tracking.sinks.base import Sink
from trainer.tracking.writer import WriterProcess

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def flatten(cfg, prefix=""):
    """`{"schedule.initial_lr": "0.001", ...}` from a (resolved) config, for MLflow params."""
    container = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg
    out = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):  # a node of a larger config resolves against its root
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def git_commit():
    """(commit, dirty) of the project checkout, or ("unknown", False) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
            timeout=10,
        )
        return commit, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def build_sinks(sink_cfg, sweep=False):
    """{name: Sink} from the composed `sink` node (`conf/sink/*.yaml`), each checked; with
    `sweep`, only those that record a sweep's parent run (`Sink.records_sweeps`).

    Building a sink only stores its settings; `check()` fails fast (a ConfigError naming
    the key) where they cannot work, before any data is loaded or run started.
    """
    from trainer.config.build import instantiate_checked

    sinks = {}
    for name, node in (sink_cfg or {}).items():
        sink = instantiate_checked(f"sink.{name}", node)
        if not isinstance(sink, Sink):
            raise ConfigError(
                f"sink.{name}._target_={node._target_!r} is not a trainer.tracking.sinks.base.Sink",
                fix="subclass Sink (docs/training.md, Adding a sink)",
            )
        sink.check()
        if sink.records_sweeps or not sweep:
            sinks[name] = sink
    return sinks


@dataclass
class Ending:
    """How a run ended, for whoever started it (a sweep's trial, the console): `TrackedRun`
    fills it as the run closes. What stops a run early may say first how it is to end
    (`forced_status`, `tags`: Optuna's pruning ends a trial KILLED, tagged as pruned)."""

    status: str | None = None  # FINISHED, FAILED or KILLED; None while no run has closed
    refs: dict = field(default_factory=dict)  # what each sink returned to link to the run
    name: str = ""
    run_dir: str = ""
    run_id: str | None = None  # the MLflow run's, if any
    forced_status: str | None = None
    tags: dict = field(default_factory=dict)

    def note(self):
        """`; MLflow run NAME (ID) saved as KILLED, with every step trained so far in DIR`,
        for the console's last line after a stop ("" before any run closed)."""
        if self.status is None:
            return ""
        where = (
            f"MLflow run {self.name} ({self.run_id}) saved as KILLED, with " if self.run_id else ""
        )
        return f"; {where}every step trained so far in {self.run_dir}"


class TrackedRun:
    """A run in every configured sink, with its params and tags, and the writer that feeds them.

    Args:
        sinks: {name: Sink}, built and checked (`build_sinks`); each run pickles its own
            copies into the writer process, so one dict serves several runs.
        strict: a tracking error fails the run (`tracking.strict`).
        run: the `RunInfo` each sink starts with (name, folder, inputs, linked runs).
        params, tags: logged once the sinks have started.
        ending: an `Ending` to fill as the run closes (and to read a forced end from).

    Inside the `with` block, `writer` takes steps, scalars, tags and artifacts; `refs`
    holds what each sink returned to link to this run (`refs["mlflow"]["run_id"]`).
    """

    def __init__(self, sinks, strict, run, params, tags, ending=None):
        self.sinks, self.strict = sinks, strict
        self.ending = ending if ending is not None else Ending()
        self.info, self.params, self.tags = run, params, tags
        self.run_dir = Path(run.dir)
        self.refs = {}
        self.views = []  # one line per sink on how to look at the run, logged at its end
        self.failure = None  # set to a reason to end as FAILED without an exception

    def __enter__(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = WriterProcess(self.sinks, strict=self.strict)
        started = self.writer.start(self.info)
        self.refs = {name: s.ref for name, s in started.items()}
        self.views = [s.view for s in started.values() if s.view]
        for s in started.values():
            if s.where:
                log.info("%s", s.where)
        self.writer.params(self.params)
        # Which process runs it, so that `python -m trainer.tracking repair` can tell.
        self.writer.tags({**self.tags, **process_tags()})
        return self

    @property
    def run_id(self):
        """The MLflow run's id, or None without the MLflow sink."""
        return self.refs.get("mlflow", {}).get("run_id")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):  # or SIGTERM
            status = "KILLED"
        elif exc_type is not None or self.failure:
            status = "FAILED"
        else:
            status = "FINISHED"
        ending = self.ending
        if exc_type is not None and ending.forced_status:  # e.g. a pruned trial: KILLED
            status = ending.forced_status
        if ending.tags:
            self.writer.tags(ending.tags)
        self.writer.close(status)
        log.info("%s ended %s", self.info.name, status)
        for view in self.views:
            log.info("%s", view)
        ending.status, ending.refs, ending.run_id = status, self.refs, self.run_id
        ending.name, ending.run_dir = self.info.name, str(self.run_dir)
        return False


def command_line(args=None):
    """`python -m trainer ARGS` (this process's arguments by default), quoted for a shell."""
    return shlex.join(["python", "-m", "trainer", *(sys.argv[1:] if args is None else args)])


def source_tags(args=None):
    """What MLflow's UI shows as the run's Source: the command, not `__main__`.

    The UI shows a source name after its last `/`, so overrides holding a path or a URI
    (output folders, tracking stores: where, not what) are left out here; `lrlab.command`
    keeps the whole command line.
    """
    what = [arg for arg in (sys.argv[1:] if args is None else args) if "/" not in arg]
    return {"mlflow.source.name": command_line(what), "mlflow.source.type": "LOCAL"}
