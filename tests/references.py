"""Independent pure-Python references for every schedule family (float64, loops, `math`).

Written from the papers and from PyTorch's / Keras' documented formulas, not from our
code: cycles are found by walking them, phases by scanning them.
"""

import math


def exponential(k, initial_lr, decay_steps, decay_rate, staircase=False, min_lr=0.0):
    p = k // decay_steps if staircase else k / decay_steps
    return max(initial_lr * decay_rate**p, min_lr)


def step(k, initial_lr, decay_rate, step_size, min_lr=0.0):
    return max(initial_lr * decay_rate ** (k // step_size), min_lr)


def piecewise(k, boundaries, values):
    for b, v in zip(boundaries, values):
        if k <= b:
            return v
    return values[-1]


def polynomial(k, initial_lr, decay_steps, end_lr, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * max(1, math.ceil(k / decay_steps))
    else:
        k = min(k, decay_steps)
    return (initial_lr - end_lr) * (1 - k / decay_steps) ** power + end_lr


def inverse_time(k, initial_lr, decay_steps, decay_rate, staircase=False):
    p = k // decay_steps if staircase else k / decay_steps
    return initial_lr / (1 + decay_rate * p)


def cosine(k, initial_lr, decay_steps, min_lr=0.0, warmup_steps=0, warmup_start_lr=0.0):
    if k < warmup_steps:
        return warmup_start_lr + (initial_lr - warmup_start_lr) * k / warmup_steps
    t = min(k - warmup_steps, decay_steps)
    return min_lr + (initial_lr - min_lr) * (1 + math.cos(math.pi * t / decay_steps)) / 2


def sgdr(
    k,
    initial_lr,
    first_cycle_steps,
    min_lr=0.0,
    t_mult=2.0,
    m_mul=1.0,
    reduction_steps=(),
    reduction_factor=0.1,
):
    start, length, i = 0.0, float(first_cycle_steps), 0
    while k >= start + length:
        start += length
        length *= t_mult
        i += 1
    peak = min_lr + (initial_lr - min_lr) * m_mul**i
    lr = min_lr + (peak - min_lr) * (1 + math.cos(math.pi * (k - start) / length)) / 2
    return lr * reduction_factor ** sum(k >= r for r in reduction_steps)


def clr(k, base_lr, max_lr, step_size, mode="triangular", gamma=1.0):
    cycle = math.floor(1 + k / (2 * step_size))
    x = abs(k / step_size - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma**k}[mode]
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x) * scale


def one_cycle(
    k,
    max_lr,
    total_steps,
    pct_start=0.3,
    anneal_strategy="cos",
    div_factor=25.0,
    final_div_factor=1e4,
    three_phase=False,
):
    initial = max_lr / div_factor
    low = initial / final_div_factor
    if three_phase:
        phases = [
            (pct_start * total_steps - 1, initial, max_lr),
            (2 * pct_start * total_steps - 2, max_lr, initial),
            (total_steps - 1, initial, low),
        ]
    else:
        phases = [(pct_start * total_steps - 1, initial, max_lr), (total_steps - 1, max_lr, low)]
    k = min(k, total_steps - 1)
    begin = 0.0
    for i, (end, a, b) in enumerate(phases):
        if k <= end or i == len(phases) - 1:
            pct = (k - begin) / (end - begin)
            if anneal_strategy == "cos":
                return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)
            return a + (b - a) * pct
        begin = end
    raise AssertionError("unreachable")


def range_test(k, min_lr, max_lr, num_steps, sweep="exponential"):
    t = min(k, num_steps - 1) / (num_steps - 1)
    if sweep == "exponential":
        return min_lr * (max_lr / min_lr) ** t
    return min_lr + (max_lr - min_lr) * t


def _warmup(k, warmup_steps, warmup_start_lr, peak):
    return warmup_start_lr + (peak - warmup_start_lr) * k / warmup_steps


def wsd(
    k,
    initial_lr,
    stable_steps,
    decay_steps,
    decay_shape="1-sqrt",
    min_lr=0.0,
    warmup_steps=0,
    warmup_start_lr=0.0,
):
    # Phases found by scanning them, in order.
    if k < warmup_steps:
        return _warmup(k, warmup_steps, warmup_start_lr, initial_lr)
    k -= warmup_steps
    if k < stable_steps or decay_steps == 0:
        return initial_lr
    p = min(1.0, (k - stable_steps) / decay_steps)
    left = {"linear": 1 - p, "cosine": (1 + math.cos(math.pi * p)) / 2, "1-sqrt": 1 - p**0.5}
    return min_lr + (initial_lr - min_lr) * left[decay_shape]


def rex(k, initial_lr, decay_steps, min_lr=0.0, beta=0.5, warmup_steps=0, warmup_start_lr=0.0):
    if k < warmup_steps:
        return _warmup(k, warmup_steps, warmup_start_lr, initial_lr)
    z = 1 - min(1.0, (k - warmup_steps) / decay_steps)  # the fraction of the decay left
    return min_lr + (initial_lr - min_lr) * z / ((1 - beta) + beta * z)


def inverse_sqrt(k, initial_lr, timescale, warmup_steps=0, warmup_start_lr=0.0):
    if k < warmup_steps:
        return _warmup(k, warmup_steps, warmup_start_lr, initial_lr)
    return initial_lr / math.sqrt(1 + (k - warmup_steps) / timescale)
