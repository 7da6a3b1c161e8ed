"""`python -m trainer.tracking repair|sync`: tools for the tracking store.

    python -m trainer.tracking repair                      # MLFLOW_TRACKING_URI, else ./mlflow.db
    python -m trainer.tracking repair --uri http://localhost:5000 --stale 30m --dry-run
    python -m trainer.tracking sync outputs/2026-11-23/10-00-00   # what the store missed

`repair` closes the runs that killed processes left RUNNING, one line per RUNNING run
(`trainer/tracking/repair.py` says how a run is judged abandoned); `sync` uploads the values
a run kept in its folder while its store was away (`trainer/tracking/sync.py`). What a store
sustains is measured by `python bench/load_store.py` (a load test, kept with the benchmarks).
"""

from __future__ import annotations

import argparse
import os
import sys

from trainer.config.console import input_errors_reported
from trainer.tracking.repair import parse_span, repair

APP = "python -m trainer.tracking"


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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
