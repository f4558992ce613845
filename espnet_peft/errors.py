"""The library's error and warning classes."""


class PeftError(ValueError):
    """Bad PEFT input: config, target modules, budget, state. Raised before compute is spent."""


class PeftWarning(UserWarning):
    """A PEFT input that has an effect, but probably not the one meant (see ``targets.py``)."""


class WriteFailed(PeftError):
    """An artefact (model, adapter checkpoint) could not be written: no space left on the device, a file
    too large for the file system, ... The error names the path; nothing half-written is left under its
    name, and a file that was there before is kept."""
