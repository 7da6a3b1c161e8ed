"""The error a schedule raises for a bad constructor argument (no Keras here, so that the
apps can recognise it before TensorFlow loads)."""


class ArgumentError(ValueError):
    """A bad constructor argument, in Keras' message shape; the apps read `argument`,
    `rule` and `value` to name the config key (`schedule.<argument>`) without parsing text."""

    def __init__(self, argument, rule, value):
        super().__init__(f"Argument `{argument}` must be {rule}. Received: {argument}={value!r}")
        self.argument, self.rule, self.value = argument, rule, value
