"""Prodigy: AdamW that estimates its own step size, D (parameter-free)."""

from __future__ import annotations

import keras
from keras import ops

from trainer.optimizers.base import EstimatedStepOptimizer, constant, larger, read


@keras.saving.register_keras_serializable(package="lrlab")
class Prodigy(EstimatedStepOptimizer):
    """Prodigy (Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner", ICML 2024), as optax.contrib's `prodigy` computes it.

    `learning_rate` is a multiplier of the estimate D (1.0, or a schedule from 1.0 down:
    the paper pairs it with cosine decay). At step k (0-based), with `s_k =
    learning_rate(k)`, Adam's bias correction `bc_k = sqrt(1 - beta_2 ** (k + 1)) / (1 -
    beta_1 ** (k + 1))`, gradient g, the initial weights w0 and D at its value before the
    step:

    ```python
    dlr = D * s_k * bc_k
    r = beta_3 * r + (D / d0) * dlr * <g, w0 - w>          # sums over every weight
    s = beta_3 * s + (D / d0) * dlr * g
    D_next = max(D, d_coef * r / sum(|s|))
    m = beta_1 * m + (1 - beta_1) * D * g
    v = beta_2 * v + (1 - beta_2) * (D * g) ** 2
    w = w - weight_decay * dlr * w - dlr * m / (sqrt(v) + D_next * epsilon)
    ```

    `train/lr` logs `D * s_k`, the rate Adam would be running at (its bias correction
    apart, as for Keras' Adam): the effective step size.

    Args:
        learning_rate: the multiplier of D, a number or a schedule, > 0 (1.0).
        beta_1, beta_2: Adam's, in [0, 1).
        beta_3: decay of the D estimate's sums, in [0, 1); None: sqrt(beta_2).
        epsilon: > 0.
        d0: the initial (under-)estimate of D, > 0.
        d_coef: multiplies each estimate of D, > 0.
        weight_decay: AdamW's decoupled decay, scaled by the step size, >= 0.
    """

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=None,
        epsilon=1e-8,
        d0=1e-6,
        d_coef=1.0,
        weight_decay=0.0,
        name="prodigy",
        **kwargs,
    ):
        if beta_3 is not None and not 0 <= beta_3 < 1:
            raise ValueError(f"Argument `beta_3` must be in [0, 1). Received: beta_3={beta_3!r}")
        if not d_coef > 0:
            raise ValueError(f"Argument `d_coef` must be > 0. Received: d_coef={d_coef!r}")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, d0, weight_decay, name, **kwargs)
        self.beta_3, self.d_coef = beta_3, d_coef

    @property
    def _beta_3(self):
        return self.beta_2**0.5 if self.beta_3 is None else self.beta_3

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._w0 = [self.add_variable_from_reference(v, "initial") for v in var_list]
        for w0, v in zip(self._w0, var_list):
            self.assign(w0, ops.copy(v))  # a buffer of its own: JAX donates each

    def before_updates(self, grads, variables):
        d, beta_3 = read(self._d), self._beta_3
        dlr = self.scaled_rate(d, self.learning_rate)
        inner = sum(
            ops.sum(
                ops.cast(g, d.dtype) * ops.cast(read(self.state_of(v, self._w0)) - read(v), d.dtype)
            )
            for g, v in zip(grads, variables)
        )
        norm = 0.0
        for g, v in zip(grads, variables):
            s, dtype = self.state_of(v, self._s), v.dtype
            scale = ops.cast(d / self.d0 * dlr, dtype)
            s_next = constant(beta_3, dtype) * read(s) + scale * ops.cast(g, dtype)
            self.assign(s, s_next)
            norm = norm + ops.cast(ops.sum(ops.abs(s_next)), d.dtype)
        r = beta_3 * read(self._r) + (d / self.d0) * dlr * inner
        self.assign(self._r, r)
        self.assign(self._d_step, d)
        self.assign(self._d, larger(d, self.d_coef * r / norm))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = ops.cast(gradient, dtype)
        d, d_next = ops.cast(read(self._d_step), dtype), ops.cast(read(self._d), dtype)
        beta_1, beta_2 = constant(self.beta_1, dtype), constant(self.beta_2, dtype)
        dlr = self.scaled_rate(d, learning_rate)
        m, v = self.state_of(variable, self._m), self.state_of(variable, self._v)
        m_next = beta_1 * read(m) + (1 - beta_1) * d * g
        v_next = beta_2 * read(v) + (1 - beta_2) * ops.square(d * g)
        self.assign(m, m_next)
        self.assign(v, v_next)
        w = read(variable)
        step = dlr * m_next / (ops.sqrt(v_next) + d_next * constant(self.epsilon, dtype))
        if self.decoupled_decay:
            step = step + constant(self.decoupled_decay, dtype) * dlr * w
        self.assign(variable, w - step)

    def get_config(self):
        config = super().get_config()
        config.update(beta_3=self.beta_3, d_coef=self.d_coef)
        return config
