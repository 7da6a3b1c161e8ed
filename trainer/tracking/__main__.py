"""`python -m trainer.tracking repair`: close the runs that killed processes left RUNNING.

    python -m trainer.tracking repair                      # MLFLOW_TRACKING_URI, else ./mlflow.db
    python -m trainer.tracking repair --uri http://localhost:5000 --stale 30m --dry-run

Prints one line per RUNNING run (repaired, or left and why); `trainer/tracking/repair.py`
says how a run is judged abandoned.
"""

from __future__ import annotations

import argparse
import os
import sys

from schedules.console import input_errors_reported
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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    main()
