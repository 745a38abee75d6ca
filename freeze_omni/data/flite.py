"""CMU Flite: a synthesizer the models never hear in training, kept for evaluation only.

Issue #8 asks for the speech encoder's error rate on "a synthesizer never used in training".
Flite (Debian package `flite`) has its own lexicon, letter-to-sound rules and waveform
generators (diphone for kal/kal16, clustergen for awb/rms/slt); it shares nothing with Piper,
Kokoro or espeak-ng, whose phonemiser the other two use. That is why it lives here and not in
`engines.py`: the corpus builder can never pick it, and a test checks that.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freeze_omni.audio.io import read_audio
from freeze_omni.errors import ModelNotFoundError

ENGINE = "flite"


@dataclass(frozen=True)
class FliteVoice:
    id: str  # stable, used in manifests: "flite-slt"
    name: str  # what `flite -voice` calls it
    description: str


# Every voice built into Debian's flite 2.2 except awb_time (it only speaks clock times).
VOICES: tuple[FliteVoice, ...] = (
    FliteVoice("flite-slt", "slt", "US English female, clustergen"),
    FliteVoice("flite-rms", "rms", "US English male, clustergen"),
    FliteVoice("flite-awb", "awb", "Scottish English male, clustergen"),
    FliteVoice("flite-kal16", "kal16", "US English male, diphone, 16 kHz"),
    FliteVoice("flite-kal", "kal", "US English male, diphone, 8 kHz (telephone band once resampled)"),
)


def check_flite() -> str:
    """Path of the `flite` program, or a clear error before any work starts."""
    path = shutil.which("flite")
    if path is None:
        raise ModelNotFoundError("flite is not installed (apt-get install flite; `make` installs it)")
    return path


class FliteEngine:
    """One `flite` process per utterance; text goes through a file so nothing is read as an option."""

    def __init__(self) -> None:
        self._program = check_flite()
        self._tmp = tempfile.TemporaryDirectory(prefix="freeze-omni-flite-")

    def synthesize(self, text: str, voice: FliteVoice) -> np.ndarray:
        """float32 mono audio at 16 kHz (kal speaks at 8 kHz and is resampled)."""
        folder = Path(self._tmp.name)
        text_file, out = folder / "utterance.txt", folder / "utterance.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        out.unlink(missing_ok=True)
        command = [self._program, "-voice", voice.name, "-f", str(text_file), "-o", str(out)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not out.is_file():
            raise ModelNotFoundError(
                f"flite failed for voice {voice.name!r}: {(result.stderr or result.stdout).strip()[:200]}"
            )
        return read_audio(out)

    def close(self) -> None:
        self._tmp.cleanup()
