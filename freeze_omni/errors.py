"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class FreezeOmniError(Exception):
    """Base class: something the user can fix (bad input, missing file, missing model)."""


class AudioError(FreezeOmniError):
    """Audio that cannot be read or is unusable (empty, truncated, not audio, wrong format)."""


class ModelNotFoundError(FreezeOmniError):
    """Weights that are needed are not installed or not trained yet."""
