"""The error for bad input: a key, a value or a file the user gave, and how to fix it.

The command-line apps print a `ConfigError` as a few lines, without a traceback, and exit
with status 2 before any MLflow run exists. Everything else stays an ordinary exception.
"""


class ConfigError(ValueError):
    """Bad input. `str(err)` names the key or file and what was expected; `fix` says what to do."""

    def __init__(self, message, fix=None):
        super().__init__(message)
        self.fix = fix

    @property
    def message(self):
        """What was wrong, without the fix."""
        return super().__str__()

    def __str__(self):
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message
