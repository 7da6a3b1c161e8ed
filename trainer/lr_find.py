"""The learning-rate range test: raise the rate every step, record the batch loss, suggest a rate.

Everything about the range test is here: the sweep (`range_test`), the rules (`suggest`),
the plot, the tracked run of `python -m trainer task=lr_find` (`find_lr`), and the
`schedule.max_lr=auto` (or `schedule.initial_lr=auto`) flow that runs it first and trains
with its suggestion (`train_at_suggestion`). Its settings are `conf/lr_find/default.yaml`.

The sweep trains a copy of the model (same weights) with a fresh optimizer of the configured
kind, so the model it was given is left exactly as it was, untrained, and its optimizer
untouched. Each step's batch loss comes from the recording train step (not Keras' running
mean since the epoch began, which lags and biases the curve toward high rates).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from hydra.utils import instantiate

from metrics import MeanIoU
from schedules import RangeTest
from trainer.batches import batches
from trainer.choices import SUGGESTION_RULES as RULES
from trainer.recording import StepBuffer, read_rows, recording
from trainer.tracking import metadata
from trainer.tracking.run import TrackedRun
from trainer.train import Loaded

log = logging.getLogger(__name__)
SETTLING_STEPS = 10  # steps before the smoothed loss's slope means anything (`suggest`)


@dataclass
class RangeTestResult:
    """Per-step rates, batch losses and smoothed losses, and the suggestions."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped: str  # "completed", "diverged" or "non-finite loss"
    suggestions: dict = field(default_factory=dict)


def suggest(lrs, smoothed):
    """Three suggestions from a range test (NaN where the curve gives none).

    - steepest (the default): where the smoothed loss falls fastest against log rate, from
      the `SETTLING_STEPS`-th step (before it the average holds too few batches) to its
      minimum;
    - valley: in the longest stretch where the smoothed loss keeps falling, the rate half
      way down the stretch (fastai's `valley`);
    - minimum: the rate at the smoothed loss's minimum, divided by 10.
    """
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    if len(lrs) < 3:
        return {rule: math.nan for rule in RULES}
    best = int(np.argmin(smoothed))
    out = {"minimum": float(lrs[best] / 10)}
    # The first values average only a few batches, so neighbours differ by a batch's noise
    # over k: at 200 steps that out-falls a real descent (measured: Fashion-MNIST MLP, SGD,
    # seed 4 suggested the sweep's first rate, 1e-7).
    first = min(SETTLING_STEPS, max(best - 2, 0))
    head = slice(first, max(best, first + 2) + 1)
    slope = np.gradient(smoothed[head], np.log(lrs[head]))
    out["steepest"] = float(lrs[head][int(np.argmin(slope))])
    # Longest decreasing subsequence ending at each point (O(n^2), n is a few hundred).
    n = len(smoothed)
    length = np.ones(n, dtype=int)
    for i in range(1, n):
        earlier = smoothed[:i] > smoothed[i]
        if earlier.any():
            length[i] = length[:i][earlier].max() + 1
    end = int(np.argmax(length))
    start = end - length[end] + 1
    third = (end - start) / 3
    out["valley"] = float(lrs[start + int(third) + int(third / 2)])
    return out


def smooth(losses, beta):
    """The sweep's smoothed loss: `avg_k / (1 - beta**(k+1))` with `avg_k = beta avg_(k-1) +
    (1 - beta) loss_k`, NaN from the first non-finite loss on (as `_DivergenceWatch` keeps it
    step by step); for looking at a recorded sweep with another smoothing."""
    out, avg = np.full(len(losses), np.nan), 0.0
    for k, loss in enumerate(losses):
        if not math.isfinite(loss):
            break
        avg = beta * avg + (1 - beta) * loss
        out[k] = avg / (1 - beta ** (k + 1))
    return out


class _DivergenceWatch(keras.callbacks.Callback):
    """Smooths each step's batch loss as it comes, and stops the sweep when the smoothed loss
    exceeds `factor` x its best, or the loss is non-finite.

    The smoothing is a moving average with bias correction: `avg_k / (1 - beta**(k+1))`.
    `smoothed` holds one value per step (NaN at a non-finite loss).
    """

    def __init__(self, buffer, beta, factor):
        super().__init__()
        self.buffer, self.beta, self.factor = buffer, beta, factor
        self.avg, self.best, self.stopped = 0.0, math.inf, "completed"
        self.smoothed = []

    def on_train_batch_end(self, batch, logs=None):
        # Every step's loss: a synchronous hook (no `async_safe`), on the training thread,
        # where JAX's state may be synced to read it.
        loss = float(read_rows(self.model, self.buffer, batch, batch + 1)["loss"][0])
        if not math.isfinite(loss):
            self.smoothed.append(math.nan)
            self.stopped, self.model.stop_training = "non-finite loss", True
            return
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smoothed = self.avg / (1 - self.beta ** (batch + 1))
        self.smoothed.append(smoothed)
        if batch > 0 and smoothed > self.factor * self.best:
            self.stopped, self.model.stop_training = "diverged", True
        self.best = min(self.best, smoothed)


def _loss_object(loss):
    """`loss` as a `keras.losses.Loss` (the recording step calls it on each batch): itself,
    or what Keras makes of its name, a per-sample function averaged over the batch."""
    found = keras.losses.get(loss)
    if isinstance(found, keras.losses.Loss):
        return found

    class Named(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return found(y_true, y_pred)

    return Named(name=str(loss))


def range_test(
    model,
    make_optimizer,
    train_ds,
    loss,
    num_classes,
    *,
    min_lr=1e-7,
    max_lr=10.0,
    num_steps=200,
    sweep="exponential",
    smoothing=0.98,
    divergence_factor=4.0,
):
    """Run the range test on a copy of `model`; `model` itself is left untouched.

    Args:
        model: a built Keras model (its weights are copied, never changed).
        make_optimizer: `make_optimizer(learning_rate)` -> a fresh optimizer.
        train_ds: batches of (x, y) without end (`trainer.batches.batches(..., repeat=True)`).
        loss: the training loss (a `keras.losses.Loss`, or a Keras loss name).
        num_classes: for the MeanIoU metric the recording step reads.
        min_lr, max_lr, num_steps, sweep: the sweep (`schedules.RangeTest`).
        smoothing: beta of the bias-corrected moving average of the loss, in [0, 1).
        divergence_factor: stop once the smoothed loss exceeds this times its best, > 1.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"lr_find.smoothing must be in [0, 1). Received: {smoothing!r}")
    if not divergence_factor > 1:
        raise ValueError(f"lr_find.divergence_factor must be > 1. Received: {divergence_factor!r}")
    schedule = RangeTest(min_lr, max_lr, num_steps, sweep)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    buffer = StepBuffer(num_steps + 1, num_classes)
    mean_iou = MeanIoU(num_classes)
    loss = _loss_object(loss)
    probe = recording(copy, buffer, mean_iou, loss)
    probe.compile(optimizer=make_optimizer(schedule), loss=loss, metrics=[mean_iou])
    watch = _DivergenceWatch(buffer, smoothing, divergence_factor)
    probe.fit(
        train_ds,
        steps_per_epoch=num_steps,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[watch],
    )
    steps_done = int(probe.optimizer.iterations.numpy())
    recorded = buffer.read(0, steps_done)
    lrs, losses = recorded["lr"].astype(np.float64), recorded["loss"].astype(np.float64)
    smoothed = np.array(watch.smoothed[:steps_done])
    result = RangeTestResult(lrs, losses, smoothed, watch.stopped, suggest(lrs, smoothed))
    log.info(
        "range test: %d of %d steps (%s), rates %.3g .. %.3g; suggestions %s",
        steps_done,
        num_steps,
        watch.stopped,
        lrs[0],
        lrs[-1],
        ", ".join(f"{k}={v:.3g}" for k, v in result.suggestions.items()),
    )
    return result


def plot(result, path, title="", chosen="steepest"):
    """Loss (batch and smoothed) against the rate, log x, with the suggestions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.plot(result.lrs, result.losses, lw=0.6, alpha=0.4, label="batch loss")
    ax.plot(result.lrs, result.smoothed, lw=1.6, label="smoothed loss")
    colours = {"valley": "tab:green", "steepest": "tab:orange", "minimum": "tab:red"}
    for rule, lr in result.suggestions.items():
        if math.isfinite(lr):
            mark = " (used by auto)" if rule == chosen else ""
            name = "minimum / 10" if rule == "minimum" else rule
            ax.axvline(lr, color=colours[rule], ls="--", lw=1.2, label=f"{name}: {lr:.3g}{mark}")
    ax.set_xscale("log")
    finite = result.smoothed[np.isfinite(result.smoothed)]
    if len(finite):
        low, high = finite.min(), finite[: max(int(np.argmin(finite)), 1) + 1].max()
        ax.set_ylim(low - 0.1 * (high - low), high + 0.25 * (high - low))
    ax.set(xlabel="learning rate (log scale)", ylabel="loss", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def find_lr(experiment, loaded=None, subfolder=None, ending=None) -> dict:
    """Run the learning-rate range test as its own tracked run; returns the suggestions.

    Args:
        experiment: the built run (`trainer.experiment.build`); `cfg.lr_find` holds the
            test's settings. Its model is left as it was (the test trains a copy).
        loaded: its data, if already loaded (`trainer.train.Loaded.load`).
        subfolder: put the run's files in this folder of `cfg.output_dir` (for `auto`).
        ending: learns how the run ended.
    """
    cfg = experiment.cfg
    t, f = cfg.trainer, cfg.lr_find
    loaded = loaded or Loaded.load(experiment)
    data = loaded.data
    run_dir = Path(cfg.output_dir) / (subfolder or "")
    groups = ("dataset", "model", "optimizer", "trainer", "lr_find")
    opened = metadata.opening(experiment, loaded, "lr_find", groups, run_dir)
    run_name = opened.name
    strict = cfg.tracking.strict
    with TrackedRun(
        experiment.sinks, strict, opened.info, opened.params, opened.tags, ending=ending
    ) as run:
        result = range_test(
            experiment.model,
            lambda lr: instantiate(cfg.optimizer, learning_rate=lr),
            batches(data.x_train, data.y_train, t.batch_size, shuffle_seed=t.seed, repeat=True),
            "sparse_categorical_crossentropy",
            experiment.dataset.num_classes,
            min_lr=f.min_lr,
            max_lr=f.max_lr,
            num_steps=f.num_steps,
            sweep=f.sweep,
            smoothing=f.smoothing,
            divergence_factor=f.divergence_factor,
        )
        for k, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            run.writer.scalars(
                {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed_loss": smoothed}, k
            )
        chosen = result.suggestions[f.suggestion]
        final = {
            "lr_find/suggested_lr": chosen,
            **{f"lr_find/suggested_lr_{rule}": v for rule, v in result.suggestions.items()},
            "lr_find/steps": float(len(result.lrs)),
        }
        run.writer.scalars({k: v for k, v in final.items() if math.isfinite(v)}, 0)
        np.savetxt(
            run_dir / "lr_find.csv",
            np.column_stack([result.lrs, result.losses, result.smoothed]),
            delimiter=",",
            header="lr,loss,smoothed_loss",
            comments="",
        )
        png = plot(result, run_dir / "lr_find.png", run_name, chosen=f.suggestion)
        run.writer.artifacts([run_dir / "lr_find.csv", png])
        run.writer.tags(
            {"lrlab.lr_find.stopped": result.stopped, "lrlab.lr_find.rule": f.suggestion}
        )
        if not math.isfinite(chosen):
            run.failure = "no suggestion"
            raise ValueError(
                f"{run_name}: the range test gave no {f.suggestion!r} suggestion "
                f"({result.stopped} after {len(result.lrs)} steps); widen lr_find.min_lr.."
                "lr_find.max_lr or raise lr_find.num_steps."
            )
        log.info(
            "%s: suggested learning rate %.4g (%s); plot %s",
            run_name,
            chosen,
            f.suggestion,
            run_dir / "lr_find.png",
        )
        return {
            **final,
            "run_id": run.run_id,
            "run_name": run_name,
            "refs": run.refs,
            "stopped": result.stopped,
        }


def train_at_suggestion(experiment, ending=None):
    """The range test, then training with its suggestion as `schedule.<key>` for each of
    the experiment's `auto` keys.

    The range test's run is shown in MLflow as a child of the training run; `ending` is the
    training run's.
    """
    from trainer.train import Loaded, train

    loaded = Loaded.load(experiment)
    found = find_lr(experiment, loaded, subfolder="lr_find")
    keys = experiment.auto_keys
    suggested = found["lr_find/suggested_lr"]
    data = loaded.data
    trained = experiment.with_schedule(
        len(data.x_train) + len(data.x_val), dict.fromkeys(keys, suggested)
    )
    tags = {
        "lrlab.lr_find.run_id": str(found["run_id"]),
        "lrlab.lr_find.suggested_lr": repr(suggested),
        "lrlab.lr_find.rule": experiment.cfg.lr_find.suggestion,
        "lrlab.lr_find.auto_keys": ",".join(f"schedule.{key}" for key in keys),
    }
    return train(trained, loaded, extra_tags=tags, child_runs=[found["refs"]], ending=ending)
