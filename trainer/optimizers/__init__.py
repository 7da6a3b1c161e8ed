"""Optimizers Keras does not have (or not as research needs them), written with `keras.ops`
for every backend, and the one hook the trainer asks of an optimizer.

Two hooks the trainer asks of an optimizer, each with a default for Keras' own:

- An optimizer whose training weights are not the ones to evaluate (schedule-free: the
  model trains at y, the paper evaluates the average x) has an `evaluation_weights()`
  context manager; `evaluation_weights(model)` gives it, or a no-op.
- An optimizer whose step size is not its `learning_rate` (parameter-free: it estimates D
  and `learning_rate` only multiplies it) has a `step_size()`; `step_rate(optimizer)` is
  that, or `learning_rate` (the schedule's value at the optimizer's step), and is what each
  step logs as `train/lr`.
"""

import contextlib


def evaluation_weights(model):
    """A context in which `model` holds the weights to evaluate and save."""
    swap = getattr(model.optimizer, "evaluation_weights", None)
    return swap() if swap is not None else contextlib.nullcontext()


def step_rate(optimizer):
    """The rate of the optimizer's coming step (a tensor)."""
    step_size = getattr(optimizer, "step_size", None)
    return step_size() if step_size is not None else optimizer.learning_rate
