"""Where caches live: converted weights are derived data, kept out of the repo and out of git."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "default"
EXAMPLES_DIR = PACKAGE_DIR / "examples"


def cache_dir() -> Path:
    """`$FREEZE_OMNI_CACHE`, else `$XDG_CACHE_HOME/freeze-omni`, else `~/.cache/freeze-omni`."""
    if env := os.environ.get("FREEZE_OMNI_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "freeze-omni"


def data_dir() -> Path:
    """Corpora and training runs: `$FREEZE_OMNI_DATA`, else `~/.local/share/freeze-omni`.

    Outside the repo on purpose: a fresh checkout must not carry gigabytes of synthesized speech.
    """
    if env := os.environ.get("FREEZE_OMNI_DATA"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "freeze-omni"
