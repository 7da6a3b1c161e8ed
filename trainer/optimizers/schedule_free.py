"""Schedule-free AdamW, with the averaged weights the paper evaluates.

Ours rather than `keras.optimizers.ScheduleFreeAdamW` (Keras 3.15), for two reasons:

- Keras' keeps the training sequence y in the model's weights and offers no way to
  evaluate at the averaged sequence x (`x = (y - (1 - beta_1) * z) / beta_1`): validation,
  test, checkpoints and saved models would all see y. Here `evaluation_weights()` swaps x in
  and puts y back.
- Keras' averages with weight 1/t whatever the rate; the paper and its reference code
  (facebookresearch/schedule_free, `AdamWScheduleFree`) weight step t by `lr_max_t ** 2`,
  the largest rate so far squared, so the iterates of a warmup count less. With lrlab's
  warmup (`warmup=linear`) the two differ.

The update is the reference's, step for step (`tests/test_optimizers.py` checks it against
the `schedulefree` package in float64).
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from trainer.optimizers.base import WholeStepOptimizer, constant


@keras.saving.register_keras_serializable(package="lrlab")
class ScheduleFreeAdamW(WholeStepOptimizer):
    """Schedule-free AdamW (Defazio et al., "The Road Less Scheduled", NeurIPS 2024).

    Three sequences: z (the base SGD-like iterate), x (the weighted average of the z's,
    evaluated) and y (where gradients are taken, the model's weights in training). At step
    k (0-based) with rate `lr = learning_rate(k)` and gradient g at y:

    ```python
    v = beta_2 * v + (1 - beta_2) * g ** 2
    d = g / (sqrt(v / (1 - beta_2 ** (k + 1))) + epsilon) + weight_decay * y
    lr_max = max(lr_max, lr)
    c = lr_max ** 2 / (sum of lr_max ** 2 over steps 0..k)     # 0 while every rate is 0
    y = (1 - c) * y + c * z + lr * (beta_1 * (1 - c) - 1) * d  # x_{k+1} = (1 - c) x_k + c z_{k+1}
    z = z - lr * d
    ```

    and `x = (y - (1 - beta_1) * z) / beta_1` at any time. `learning_rate` is the constant
    rate the paper uses (with a warmup: `schedule=constant warmup=linear`); any schedule
    works, and `train/lr` logs it.

    Args:
        learning_rate: a rate or a schedule, > 0 (the reference's default 0.0025).
        beta_1: interpolation between z and x for y, in (0, 1).
        beta_2: decay of the squared-gradient average, in [0, 1).
        epsilon: added to the denominator, > 0.
        weight_decay: decoupled decay taken at y, as the reference does, >= 0.
        weight_lr_power: the power of `lr_max` in the averaging weights (0: uniform, 1/t).
    """

    def __init__(
        self,
        learning_rate=0.0025,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=0.0,
        weight_lr_power=2.0,
        name="schedule_free_adamw",
        **kwargs,
    ):
        if not 0 < beta_1 < 1:
            raise ValueError(f"Argument `beta_1` must be in (0, 1). Received: beta_1={beta_1!r}")
        if not 0 <= beta_2 < 1:
            raise ValueError(f"Argument `beta_2` must be in [0, 1). Received: beta_2={beta_2!r}")
        if not epsilon > 0:
            raise ValueError(f"Argument `epsilon` must be > 0. Received: epsilon={epsilon!r}")
        if not weight_decay >= 0:
            raise ValueError(
                f"Argument `weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        # Not Keras' own weight_decay, which would shrink y before each update, outside the
        # step: the reference adds it to the normalised gradient, taken at y (update_step).
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.decay_at_y, self.weight_lr_power = weight_decay, weight_lr_power

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._z = [self.add_variable_from_reference(v, "z") for v in var_list]
        for z, v in zip(self._z, var_list):
            self.assign(z, ops.copy(v))  # a buffer of its own: JAX donates each
        self._v = [self.add_variable_from_reference(v, "exp_avg_sq") for v in var_list]
        self._lr_max = self.add_variable((), name="lr_max", dtype="float32")
        self._weight = self.add_variable((), name="average_weight", dtype="float32")
        self._weight_sum = self.add_variable((), name="average_weight_sum", dtype="float32")

    def before_updates(self, grads, variables):
        # The averaging weight is one number per step, read by every variable's update.
        lr = ops.cast(self.learning_rate, "float32")
        lr_max = ops.maximum(self._lr_max, lr)
        weight = ops.power(lr_max, self.weight_lr_power)
        self.assign(self._lr_max, lr_max)
        self.assign(self._weight, weight)
        self.assign(self._weight_sum, self._weight_sum + weight)

    def update_step(self, gradient, variable, learning_rate):
        z, v = self.state_of(variable, self._z), self.state_of(variable, self._v)
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        k1 = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = constant(self.beta_1, dtype), constant(self.beta_2, dtype)
        # c = weight / weight_sum in the variable's precision; 0 while every rate was 0.
        weight, weight_sum = ops.cast(self._weight, dtype), ops.cast(self._weight_sum, dtype)
        c = ops.where(weight_sum > 0, weight / ops.where(weight_sum > 0, weight_sum, 1), 0)

        self.assign(v, beta_2 * v + (1 - beta_2) * ops.square(g))
        denom = ops.sqrt(v / (1 - beta_2**k1)) + constant(self.epsilon, dtype)
        d = g / denom
        if self.decay_at_y:
            d = d + constant(self.decay_at_y, dtype) * variable
        y = (1 - c) * variable + c * z + lr * (beta_1 * (1 - c) - 1) * d
        self.assign(variable, y)
        self.assign(z, z - lr * d)

    def averaged(self, variable):
        """x for one of the model's trainable variables (y, in the model in training)."""
        z = self.state_of(variable, self._z)
        beta_1 = constant(self.beta_1, variable.dtype)
        return (variable - (1 - beta_1) * z) / beta_1

    @contextlib.contextmanager
    def evaluation_weights(self):
        """The model's trainable weights set to x inside the block, and y's exact values
        put back after it (not recomputed from x, which would move the last bits)."""
        if not self.built:  # no step yet: x = y
            yield
            return
        variables = self._trainable_variables
        kept = [ops.copy(v.value) for v in variables]
        for variable in variables:
            variable.assign(self.averaged(variable))
        try:
            yield
        finally:
            for variable, value in zip(variables, kept):
                variable.assign(value)

    def get_config(self):
        config = super().get_config()
        config.update(
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            weight_decay=self.decay_at_y,
            weight_lr_power=self.weight_lr_power,
        )
        return config
