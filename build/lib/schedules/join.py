"""The two primitives every composite schedule is made of: a join and piecewise interpolation.

A *piece* is any callable from a float32 step tensor to a float32 rate: a schedule, or a
small function such as `ramp(...)`. Warmups (`LinearWarmup`, cosine's own), `Sequence`
and one-cycle's phases are built from these, so there is one mechanism, not one per class.
"""

from __future__ import annotations

from keras import ops


def join(step, pieces, boundaries):
    """`pieces[i](step - start_i)` on `[start_i, boundaries[i])`, from `start_0 = 0` (steps).

    ```python
    i = sum(step >= b for b in boundaries)
    start = boundaries[i - 1] if i > 0 else 0
    lr = pieces[i](step - start)      # each piece counts steps from its own start
    ```

    Optax's `join_schedules`. `pieces` has one more item than `boundaries`, which are
    strictly increasing step numbers (the callers validate them).
    """
    starts = [0.0] + [float(b) for b in boundaries]
    lr = pieces[-1](ops.maximum(step - starts[-1], 0.0))
    for piece, start, end in reversed(list(zip(pieces, starts, boundaries))):
        lr = ops.where(step < end, piece(ops.maximum(step - start, 0.0)), lr)
    return lr


def ramp(start_lr, end_lr, length):
    """A piece rising (or falling) linearly from `start_lr` to `end_lr` over `length` steps.

    `end_lr` may be a tensor (where the ramp leads into another piece's first value).
    """
    length = ops.cast(length, "float32")

    def piece(t):
        return (end_lr - start_lr) * (t / length) + start_lr

    return piece


def interpolate(step, knots, values, anneal):
    """Piecewise interpolation: on segment `i`, `anneal(values[i], values[i+1], pct)` (steps).

    ```python
    i = first i with step <= knots[i + 1]
    pct = (step - knots[i]) / (knots[i + 1] - knots[i])
    ```

    `knots` start at 0 and increase; `anneal(a, b, pct)` goes from `a` at `pct = 0` to `b`
    at `pct = 1` (linear, cosine, ...). Past the last knot, hold the last value.
    """
    step = ops.minimum(step, knots[-1])
    lr = None
    # From the last segment back, so that the first segment whose end >= step wins.
    for i in reversed(range(len(knots) - 1)):
        begin, end = knots[i], knots[i + 1]
        pct = (step - begin) / (end - begin)
        segment = anneal(values[i], values[i + 1], pct)
        lr = segment if lr is None else ops.where(step <= end, segment, lr)
    return lr
