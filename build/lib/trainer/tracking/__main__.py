"""`python -m trainer.tracking repair|sync|load`: tools for the tracking store.

    python -m trainer.tracking repair                      # MLFLOW_TRACKING_URI, else ./mlflow.db
    python -m trainer.tracking repair --uri http://localhost:5000 --stale 30m --dry-run
    python -m trainer.tracking sync outputs/2026-11-23/10-00-00   # what the store missed
    python -m trainer.tracking load --runs 8 --steps 5000  # what the store sustains

`repair` closes the runs that killed processes left RUNNING, one line per RUNNING run
(`trainer/tracking/repair.py` says how a run is judged abandoned); `sync` uploads the values
a run kept in its folder while its store was away (`trainer/tracking/sync.py`); `load` logs
made-up steps from several runs at once through lrlab's writer, reads them back, and
reports points per second (`trainer/tracking/load.py`).
"""

from __future__ import annotations

import argparse
import os
import sys

from trainer.config.console import input_errors_reported
from trainer.tracking.repair import parse_span, repair

APP = "python -m trainer.tracking"


def positive(text):
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog=APP, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fix = commands.add_parser(
        "repair",
        help="close as KILLED the RUNNING runs whose processes are gone",
        description="Close as KILLED the RUNNING runs whose training process on this machine "
        "is gone, or whose last heartbeat is older than --stale.",
    )
    fix.add_argument(
        "--uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
        help="the MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    fix.add_argument(
        "--experiment",
        action="append",
        help="an experiment to look in (repeatable; default: lrlab)",
    )
    fix.add_argument(
        "--stale",
        default="10m",
        help="a run of another machine is abandoned after this long without a heartbeat "
        "(default 10m; heartbeats come every minute)",
    )
    fix.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    upload = commands.add_parser(
        "sync",
        help="upload the values runs kept in their folders while the store was away",
        description="Upload what each run folder's mlflow_spool.jsonl holds to its MLflow "
        "run, each value once, and close the run with the status it ended with.",
    )
    upload.add_argument("folders", nargs="+", metavar="RUN_DIR", help="run folders")
    upload.add_argument(
        "--uri", help="the store, if it moved (default: the one each run was created in)"
    )
    load = commands.add_parser(
        "load",
        help="log made-up steps from several runs at once; report points per second",
        description="Log STEPS made-up steps from RUNS runs at once through lrlab's writer "
        "processes into the store, read every run back, and report the points per second "
        "stored. Exit status 1 when a point is missing or repeated.",
    )
    load.add_argument("--uri", default=fix.get_default("uri"), help="the MLflow store")
    load.add_argument("--runs", type=positive, default=8, help="runs at once (default 8)")
    load.add_argument("--steps", type=positive, default=5000, help="steps per run (default 5000)")
    load.add_argument(
        "--flush-every", type=positive, default=200, help="steps per hand-over (default 200)"
    )
    load.add_argument(
        "--experiment", default="lrlab-load", help="where the runs go (default lrlab-load)"
    )
    args = parser.parse_args(argv)
    if args.command == "load":
        return _load(args)
    if args.command == "sync":
        return _sync(args)

    with input_errors_reported(APP):
        verdicts = repair(
            args.uri, args.experiment or ["lrlab"], parse_span(args.stale), args.dry_run
        )
    done = "would close" if args.dry_run else "closed"
    for v in verdicts:
        what = f"{done} as KILLED" if v.abandoned else "left RUNNING"
        sys.stdout.write(f"{v.name} ({v.run_id}): {what}: {v.why}\n")
    repaired = sum(v.abandoned for v in verdicts)
    sys.stdout.write(f"{len(verdicts)} RUNNING run(s) in {args.uri}; {repaired} {done} as KILLED\n")


def _sync(args):
    from trainer.tracking.sync import sync

    for folder in args.folders:
        with input_errors_reported(APP):
            done = sync(folder, args.uri)
        if done.run_id is None:
            sys.stdout.write(f"{folder}: nothing to upload\n")
        else:
            sys.stdout.write(
                f"{folder}: {done.points} points in {done.lines} writes uploaded to run "
                f"{done.run_id}, closed {done.status}\n"
            )


def _load(args):
    from trainer.tracking.load import drive, missing

    with input_errors_reported(APP):
        done = drive(args.uri, args.runs, args.steps, args.flush_every, args.experiment)
    wrong = missing(done)
    sys.stdout.write(
        f"{args.runs} runs x {args.steps} steps x 3 metrics = {done.points} points stored in "
        f"{done.seconds:.1f} s: {done.points_per_s:.0f} points/s into {args.uri}\n"
    )
    for (run_id, key), what in sorted(wrong.items()):
        sys.stdout.write(f"run {run_id} {key}: {what} (want {args.steps}, each once)\n")
    sys.stdout.write("every point present, each once\n" if not wrong else "points lost\n")
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
