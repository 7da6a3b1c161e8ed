"""What lrlab's optimizers share: a per-step pass over all variables before Keras' per-variable
updates, constants in the variables' precision, and the rate a step is logged with."""

from __future__ import annotations

import keras
from keras import ops


def constant(value, dtype):
    """`value` as a tensor of `dtype`: `ops.cast(0.999, "float64")` on TensorFlow goes
    through float32 first (0.99900001), 1e-8 off a float64 reference."""
    return ops.convert_to_tensor(value, dtype=dtype)


def read(variable):
    """The value of a Keras variable as a backend tensor. Arithmetic on the variable itself
    goes through Keras' ops, which on PyTorch compute float64 with float64 as float32
    (see `larger`); tensors use the backend's own operators."""
    return ops.convert_to_tensor(variable)


def larger(a, b):
    """`max(a, b)` elementwise, in their dtype.

    Keras 3.15 on PyTorch computes the result dtype of `ops.maximum`, `ops.minimum` and
    `ops.power` with `result_type`, which does not know torch's dtypes: two float64 tensors
    give float32 (a 1e-9 drift from a float64 reference). Hence `where` here and `**` for
    powers in these optimizers."""
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    return ops.where(a >= b, a, b)


class WholeStepOptimizer(keras.optimizers.Optimizer):
    """An optimizer whose step needs sums over every variable (a global inner product, an
    L1 norm) before any variable moves: `before_updates(grads, variables)` runs once per
    step, ahead of Keras' `update_step` for each variable.

    Keras' `Optimizer` calls `update_step` one variable at a time and has no per-step hook;
    `apply` is where a step begins on every backend (JAX's stateless apply, TensorFlow's
    and PyTorch's `apply_gradients` all go through it). Gradient clipping and Keras' own
    weight decay, applied later by Keras, are not seen by `before_updates`: these
    optimizers take neither.
    """

    def apply(self, grads, trainable_variables=None):
        if not self.built and trainable_variables is not None:
            self.build(list(trainable_variables))
        variables = (
            self._trainable_variables if trainable_variables is None else trainable_variables
        )
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        self.before_updates([g for g, _ in pairs], [v for _, v in pairs])
        return super().apply(grads, trainable_variables)

    def before_updates(self, grads, variables):  # pragma: no cover - the abstract hook
        raise NotImplementedError

    def state_of(self, variable, states):
        """The item of `states` (one optimizer variable per model variable) for `variable`."""
        return states[self._get_variable_index(variable)]

    def bias_correction(self, beta_1, beta_2, dtype="float32"):
        """Adam's `sqrt(1 - beta_2 ** (k + 1)) / (1 - beta_1 ** (k + 1))` at this step k."""
        k1 = ops.cast(self.iterations + 1, dtype)
        b1, b2 = constant(beta_1, dtype), constant(beta_2, dtype)
        return ops.sqrt(1 - b2**k1) / (1 - b1**k1)
