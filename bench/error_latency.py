"""How fast bad input is answered: every case of `tests/test_bad_input.py`, timed.

    python bench/error_latency.py            # 3 repetitions, the median per case
    python bench/error_latency.py --table    # only rewrite the table from the results

The target: an error that needs no TensorFlow (config keys and values, data headers, the
tracking store) answers in under 2 s; schedule-argument errors come before the data is
loaded (they need the schedule classes, so TensorFlow's import, about 5 s here). Each case
runs the real command (`python -m trainer ...`) in a fresh process; the time is the
command's wall time as a user sees it. Results go to `bench/results/error_latency.json` and
to the table between the markers in `docs/training.md`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_bad_input import CASES, run_case  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "error_latency.json"
DOC = ROOT / "docs" / "training.md"
BEGIN, END = "<!-- error-latency:begin -->", "<!-- error-latency:end -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="only write the table")
    args = parser.parse_args()
    if args.table:
        rows = json.loads(RESULTS.read_text())
        write_table(rows, args.reps)
        return
    rows = []
    for case in CASES:
        seconds = []
        for _ in range(args.reps):
            with tempfile.TemporaryDirectory() as tmp:
                out, lines, _, took = run_case(case, Path(tmp))
            seconds.append(took)
        rows.append(
            {
                "case": case.name,
                "command": f"python -m {case.app} {' '.join(case.args)}".strip(),
                "needs_tensorflow": case.tensorflow,
                "exit": out.returncode,
                "lines": len(lines),
                "median_s": round(statistics.median(seconds), 2),
            }
        )
        print(rows[-1])  # noqa: T201 - the benchmark's report
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
    write_table(rows, args.reps)


def write_table(rows, reps):
    fast = [r["median_s"] for r in rows if not r["needs_tensorflow"]]
    slow = [r["median_s"] for r in rows if r["needs_tensorflow"]]
    table = [
        f"Measured by `python bench/error_latency.py` (median of {reps} runs per case): "
        f"the {len(fast)} errors that need no TensorFlow answer in {min(fast):.2f} to "
        f"{max(fast):.2f} s; the {len(slow)} that do (schedule arguments, a file corrupt inside, "
        f"the failed download) in {min(slow):.1f} to {max(slow):.1f} s.",
        "",
        "| case | TensorFlow | lines | seconds |",
        "|---|---|---|---|",
        *(
            f"| {r['case']} | {'yes' if r['needs_tensorflow'] else 'no'} | {r['lines']} "
            f"| {r['median_s']:.2f} |"
            for r in rows
        ),
    ]
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n" + "\n".join(table) + f"\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
