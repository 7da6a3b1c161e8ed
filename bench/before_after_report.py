"""The ratios of `bench/before_after.sh`'s runs: lrlab's speed over bare Keras's, (b)/(a),
paired within each run, per model and side, with the median and the spread.

    python bench/before_after_report.py bench/results/before_after_issue23
"""

import json
import statistics
import sys
from pathlib import Path


def main(folder):
    rows = {}
    for path in sorted(Path(folder).glob("*-*.json")):
        side, k = path.stem.split("-")
        for model, v in json.loads(path.read_text())["results"].items():
            a, b = v["a"]["steps_per_sec"][0], v["b"]["steps_per_sec"][0]
            rows.setdefault((model, side), []).append((int(k), a, b, v["b"]["logged_every_step"]))
    lines = ["model side  (b)/(a) median  min..max      per repetition (a steps/s, b steps/s)"]
    for (model, side), runs in sorted(rows.items()):
        runs.sort()
        ratios = [b / a for _, a, b, _ in runs]
        each = " ".join(f"{r:.2f} ({a:.0f}, {b:.0f})" for r, (_, a, b, _) in zip(ratios, runs))
        lines.append(
            f"{model:5} {side:4}  {statistics.median(ratios):.3f}"
            f"           {min(ratios):.2f}..{max(ratios):.2f}    {each}"
            + ("" if all(r[3] for r in runs) else "   (a run did not log every step)")
        )
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/before_after")
