"""Reader for CTranslate2's binary model file (`model.bin`, binary format version 6).

Layout, all little-endian: uint32 version, string spec name, uint32 spec revision, uint32 variable
count, then per variable: string name, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 byte
count, raw bytes; finally uint32 alias count and (alias, target) string pairs. A string is a uint16
length (including a trailing NUL) and the bytes. We read it ourselves so that converting weights
needs no CTranslate2 runtime and can select variables by prefix without decoding the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freeze_omni.errors import FreezeOmniError

# Order of CTranslate2's DataType enum.
DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
SUPPORTED_VERSIONS = (6,)  # the layout above; older files differ


@dataclass(frozen=True)
class CT2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.take(struct.calcsize(fmt)))
        return value

    def string(self) -> str:
        return self.take(self.unpack("H"))[:-1].decode("utf-8")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FreezeOmniError("CTranslate2 model file is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_ct2(parts: Path | Sequence[Path], prefix: str = "") -> CT2Model:
    """Variables whose names start with `prefix` (aliases resolved), from one file or its parts in order."""
    paths = [parts] if isinstance(parts, Path) else list(parts)
    reader = _Reader(b"".join(Path(p).read_bytes() for p in paths))
    version = reader.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise FreezeOmniError(f"unsupported CTranslate2 binary version {version} in {paths[0]}")
    spec, revision = reader.string(), reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_id, nbytes = reader.unpack("B"), reader.unpack("I")
        raw = reader.take(nbytes)
        if not name.startswith(prefix):
            continue
        if dtype_id >= len(DTYPES):
            raise FreezeOmniError(f"variable {name} has an unsupported dtype id {dtype_id}")
        variables[name] = np.frombuffer(raw, dtype=DTYPES[dtype_id]).reshape(shape).copy()
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        if alias.startswith(prefix) and target in variables:
            variables[alias] = variables[target]
    return CT2Model(spec=spec, revision=revision, variables=variables)
