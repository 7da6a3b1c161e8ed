"""D-Adaptation Adam: AdamW that estimates its own step size, D (parameter-free)."""

from __future__ import annotations

import keras
from keras import ops

from trainer.optimizers.base import EstimatedStepOptimizer, constant, larger, read


@keras.saving.register_keras_serializable(package="lrlab")
class DAdaptAdam(EstimatedStepOptimizer):
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
        super().__init__(learning_rate, beta_1, beta_2, epsilon, d0, weight_decay, name, **kwargs)

    def before_updates(self, grads, variables):
        d = read(self._d)
        b = self.beta_2**0.5
        dlr = self.scaled_rate(d, self.learning_rate)
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
        dlr = self.scaled_rate(d, learning_rate)
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
