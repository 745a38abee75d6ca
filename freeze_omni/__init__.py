"""freeze-omni: a Freeze-Omni style speech-to-speech dialogue system around a frozen text LLM."""

__version__ = "0.1.0"
