"""The library's error and warning classes."""


class PeftError(ValueError):
    """Bad PEFT input: config, target modules, budget, state. Raised before compute is spent."""


class PeftWarning(UserWarning):
    """A PEFT input that has an effect, but probably not the one meant (see ``targets.py``)."""
