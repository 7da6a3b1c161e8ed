"""D-Adaptation Adam: AdamW that estimates its own step size, D (parameter-free)."""

from __future__ import annotations

import keras
from keras import ops

from trainer.optimizers.base import WholeStepOptimizer, constant, larger, read


@keras.saving.register_keras_serializable(package="lrlab")
class DAdaptAdam(WholeStepOptimizer):
    """D-Adaptation for AdamW (Defazio & Mishchenko, "Learning-Rate-Free Learning by
    D-Adaptation", ICML 2023), as optax.contrib's `dadapt_adamw` computes it.

    `learning_rate` multiplies the estimate D (1.0, or a schedule from 1.0 down). At step k
    (0-based), with `s_k = learning_rate(k)`, Adam's bias correction `bc_k = sqrt(1 -
    beta_2 ** (k + 1)) / (1 - beta_1 ** (k + 1))`, `b = sqrt(beta_2)`, gradient g and D at
    its value before the step:

    ```python
    dlr = D * s_k * bc_k
    r = b * r + (1 - b) * dlr * <g, s / (sqrt(v) + epsilon)>   # sums over every weight,
    s = b * s + (1 - b) * dlr * g                              # with s and v before the step
    D_next = max(D, r / ((1 - b) * sum(|s|)))
    m = beta_1 * m + (1 - beta_1) * dlr * g
    v = beta_2 * v + (1 - beta_2) * g ** 2
    w = w - weight_decay * dlr * w - m / (sqrt(v) + epsilon)
    ```

    `train/lr` logs `D * s_k`, the rate Adam would be running at (its bias correction
    apart): the effective step size.

    Args:
        learning_rate: the multiplier of D, a number or a schedule, > 0 (1.0).
        beta_1, beta_2: Adam's, in [0, 1).
        epsilon: > 0.
        d0: the initial (under-)estimate of D, > 0.
        weight_decay: AdamW's decoupled decay, scaled by the step size, >= 0.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        d0=1e-6,
        weight_decay=0.0,
        name="dadapt_adam",
        **kwargs,
    ):
        for key, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= value < 1:
                raise ValueError(f"Argument `{key}` must be in [0, 1). Received: {key}={value!r}")
        for key, value in (("epsilon", epsilon), ("d0", d0)):
            if not value > 0:
                raise ValueError(f"Argument `{key}` must be > 0. Received: {key}={value!r}")
        if not weight_decay >= 0:
            raise ValueError(
                f"Argument `weight_decay` must be >= 0. Received: weight_decay={weight_decay!r}"
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.d0 = beta_1, beta_2, epsilon, d0
        self.decoupled_decay = weight_decay

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "exp_avg") for v in var_list]
        self._v = [self.add_variable_from_reference(v, "exp_avg_sq") for v in var_list]
        self._s = [self.add_variable_from_reference(v, "grad_sum") for v in var_list]
        dtype = var_list[0].dtype if var_list else None
        self._d = self.add_variable((), dtype=dtype, name="d")
        # Assigned, not a Constant initializer, which makes 1e-6 in float32 first.
        self.assign(self._d, constant(self.d0, self._d.dtype))
        self._d_step = self.add_variable((), dtype=dtype, name="d_of_step")  # D before the step
        self._r = self.add_variable((), dtype=dtype, name="numerator_weighted")

    def step_size(self):
        """The effective rate of the coming step, `D * learning_rate(k)` (float32)."""
        return ops.cast(self._d, "float32") * ops.cast(self.learning_rate, "float32")

    def before_updates(self, grads, variables):
        d = read(self._d)
        b = self.beta_2**0.5
        dlr = (
            d
            * ops.cast(self.learning_rate, d.dtype)
            * self.bias_correction(self.beta_1, self.beta_2, d.dtype)
        )
        inner, norm = 0.0, 0.0
        for g, v in zip(grads, variables):  # with s and the squares before this step
            s, sq, dtype = self.state_of(v, self._s), self.state_of(v, self._v), v.dtype
            g = ops.cast(g, dtype)
            weighted = read(s) / (ops.sqrt(read(sq)) + constant(self.epsilon, dtype))
            inner = inner + ops.cast(ops.sum(g * weighted), d.dtype)
            s_next = constant(b, dtype) * read(s) + ops.cast((1 - b) * dlr, dtype) * g
            self.assign(s, s_next)
            norm = norm + ops.cast(ops.sum(ops.abs(s_next)), d.dtype)
        r = b * read(self._r) + (1 - b) * dlr * inner
        self.assign(self._r, r)
        self.assign(self._d_step, d)
        self.assign(self._d, larger(d, r / ((1 - b) * norm)))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = ops.cast(gradient, dtype)
        d = ops.cast(read(self._d_step), dtype)
        beta_1, beta_2 = constant(self.beta_1, dtype), constant(self.beta_2, dtype)
        dlr = (
            d
            * ops.cast(learning_rate, dtype)
            * self.bias_correction(self.beta_1, self.beta_2, dtype)
        )
        m, v = self.state_of(variable, self._m), self.state_of(variable, self._v)
        m_next = beta_1 * read(m) + (1 - beta_1) * dlr * g
        v_next = beta_2 * read(v) + (1 - beta_2) * ops.square(g)
        self.assign(m, m_next)
        self.assign(v, v_next)
        w = read(variable)
        step = m_next / (ops.sqrt(v_next) + constant(self.epsilon, dtype))
        if self.decoupled_decay:
            step = step + constant(self.decoupled_decay, dtype) * dlr * w
        self.assign(variable, w - step)

    def get_config(self):
        config = super().get_config()
        config.update(
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            d0=self.d0,
            weight_decay=self.decoupled_decay,
        )
        return config
