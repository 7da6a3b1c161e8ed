"""Run artifacts made from what was tracked: the learning-rate/loss plot and the IoU table."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_steps(path):
    """The per-step CSV as a dict of NumPy arrays (step, lr, loss, mean_iou)."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in (rows[0] if rows else {})}


def plot_lr_and_loss(steps_csv, path, title=""):
    """Two panels against the optimizer step: the rate each update used, and the batch loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_steps(steps_csv)
    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=110)
    if data:
        ax_lr.plot(data["step"], data["lr"], lw=1.2)
        ax_loss.plot(data["step"], data["loss"], lw=0.4, alpha=0.4, label="batch")
        if len(data["loss"]) >= 50:
            window = max(len(data["loss"]) // 100, 10)
            smooth = np.convolve(data["loss"], np.ones(window) / window, mode="valid")
            ax_loss.plot(data["step"][window - 1 :], smooth, lw=1.2, label=f"mean of {window}")
        ax_loss.legend(fontsize=8)
        if np.all(data["loss"][np.isfinite(data["loss"])] > 0):
            ax_loss.set_yscale("log")
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate (train/lr)")
    ax_loss.set(xlabel="optimizer step", ylabel="batch loss (train/loss)")
    for ax in (ax_lr, ax_loss):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_iou_table(path, ious, class_names):
    """`class,name,iou` rows for each class (empty iou where the class never occurs)."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "name", "iou"])
        for k, (name, iou) in enumerate(zip(class_names, ious)):
            writer.writerow([k, name, "" if np.isnan(iou) else f"{iou:.6f}"])
    return Path(path)
