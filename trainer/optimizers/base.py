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


class EstimatedStepOptimizer(WholeStepOptimizer):
    """What Prodigy and D-Adaptation share: AdamW's moments, a weighted gradient sum s, and
    the estimate D of the step size (with D as the step began, and the estimate's
    numerator r). `learning_rate` multiplies D; `step_size()` is what `train/lr` logs."""

    def __init__(self, learning_rate, beta_1, beta_2, epsilon, d0, weight_decay, name, **kwargs):
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
        # Keras' own weight_decay is not scaled by D: the decay is applied in update_step.
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
        # The estimate in the weights' precision (float64 weights: a float64 D).
        dtype = var_list[0].dtype if var_list else None
        self._d = self.add_variable((), dtype=dtype, name="d")
        # Assigned, not a Constant initializer, which makes 1e-6 in float32 first.
        self.assign(self._d, constant(self.d0, self._d.dtype))
        self._d_step = self.add_variable((), dtype=dtype, name="d_of_step")  # D before the step
        self._r = self.add_variable((), dtype=dtype, name="numerator_weighted")

    def step_size(self):
        """The effective rate of the coming step, `D * learning_rate(k)` (float32)."""
        return ops.cast(self._d, "float32") * ops.cast(self.learning_rate, "float32")

    def scaled_rate(self, d, learning_rate):
        """`dlr = D * learning_rate(k) * bc_k`, in D's dtype (Adam's bias correction bc)."""
        return (
            d
            * ops.cast(learning_rate, d.dtype)
            * self.bias_correction(self.beta_1, self.beta_2, d.dtype)
        )

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
