"""Human speech with known transcripts, found inside registry packages: for evaluation only.

Every voice the models train on is synthetic; issue #8 asks how the speech encoder does on real
people. Recordings with a transcript that can be trusted are rare in packages. The ones used here
all come from the Debian package `pocketsphinx-testdata` (CMU Sphinx's regression data, BSD-2-Clause
per its Debian copyright file), installed by `make`:

- `librivox/`: five sentences of a LibriVox reading of *Sense and Sensibility*, ch. 1 (LibriVox
  recordings are in the public domain), transcripts in the shipped Sphinx `transcription` file;
- `cards/`: five short phrases naming playing cards, transcripts in `cards.transcription`;
- `goforward.raw`: "go forward ten meters" (headerless 16 kHz PCM16), the sentence pocketsphinx's
  own tests assert the decoder recognises.

Left out on purpose: `numbers.raw` and `something.raw` (no transcript shipped or asserted) and
`tidigits/` (an LDC corpus excerpt whose only transcript is its file name). Nothing here may feed
a training stage: the recordings are few and they are the only human speech the project has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from freeze_omni.errors import ModelNotFoundError

POCKETSPHINX_TESTDATA = Path("/usr/share/pocketsphinx/test/data")
PACKAGE = "debian:pocketsphinx-testdata"
LICENCE = "BSD-2-Clause (Debian copyright of pocketsphinx-testdata)"
LIBRIVOX_LICENCE = "public domain (LibriVox recording); shipped under " + LICENCE
GOFORWARD_TEXT = "go forward ten meters"

_TRANSCRIPTION_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<words>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


@dataclass(frozen=True)
class HumanRecording:
    audio: Path  # the file as shipped (WAV, or headerless PCM16 for .raw)
    text: str
    collection: str  # "librivox", "cards", "goforward"
    package: str
    licence: str
    transcript_source: str  # where the text comes from, so a reader can check it
    pcm_sample_rate: int | None = None  # for headerless .raw files


def parse_sphinx_transcription(text: str) -> dict[str, str]:
    """Sphinx `transcription` lines, `<s> words </s> (utterance-id)`, as {id: words}."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _TRANSCRIPTION_LINE.match(line)
        if match is None or not match["words"].strip():
            raise ValueError(f"line {number}: not a Sphinx transcription line: {line!r}")
        found[match["id"]] = " ".join(match["words"].split())
    return found


def _collection(root: Path, folder: str, fileids: str, transcription: str, licence: str) -> list[HumanRecording]:
    base = root / folder
    ids = (base / fileids).read_text(encoding="utf-8").split()
    texts = parse_sphinx_transcription((base / transcription).read_text(encoding="utf-8"))
    source = f"{PACKAGE}: {folder}/{transcription}"
    return [HumanRecording(base / f"{utt}.wav", texts[utt], folder, PACKAGE, licence, source) for utt in ids]


def pocketsphinx_recordings(root: Path = POCKETSPHINX_TESTDATA) -> list[HumanRecording]:
    """The eleven recordings described above, in a fixed order; a clear error if not installed."""
    needed = [root / "librivox" / "transcription", root / "cards" / "cards.transcription", root / "goforward.raw"]
    if not all(path.is_file() for path in needed):
        raise ModelNotFoundError(
            f"{root}: pocketsphinx test data not found (apt-get install pocketsphinx-testdata; `make` installs it)"
        )
    try:
        recordings = _collection(root, "librivox", "fileids", "transcription", LIBRIVOX_LICENCE)
        recordings += _collection(root, "cards", "cards.fileids", "cards.transcription", LICENCE)
    except (KeyError, ValueError, OSError) as err:
        raise ModelNotFoundError(f"{root}: pocketsphinx test data is unreadable ({err})") from None
    recordings.append(HumanRecording(
        root / "goforward.raw", GOFORWARD_TEXT, "goforward", PACKAGE, LICENCE,
        f"{PACKAGE}: goforward.gram; asserted by pocketsphinx's own decoder tests", pcm_sample_rate=16000,
    ))
    return recordings
