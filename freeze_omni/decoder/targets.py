"""Training targets from the voice itself: phoneme ids -> Piper's durations and prior mean -> codec tokens.

Only the text encoder and the duration predictor of the voice are needed (no flow, no z), so a
smaller sub-graph than the codec's `latent.onnx` is cut once into `cache_dir()/decoder/`. The
codec tokens of a sentence are `Codec.encode` of its prior-mean frames, exactly what the codec
would produce from the full latent (the prior domain never reads z). The same sub-graph gives the
decoder the prior it chooses codes with (`VoiceText.prior`, see `SamplingConfig.prior_weight`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from freeze_omni.codec.model import Codec
from freeze_omni.codec.piper_latent import Scales, _session, derived_models, expand, voice_files
from freeze_omni.decoder.alignment import token_owners
from freeze_omni.paths import cache_dir


def alignment_model(folder: Path | None = None) -> Path:
    """Cut (once) the voice's (ids, lengths, scales) -> (durations, prior mean) sub-graph."""
    import onnx.utils

    voice = voice_files()[0]
    stat = voice.stat()
    key = hashlib.sha1(f"{voice.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    path = (folder or cache_dir() / "decoder") / f"{voice.stem}-{key}-alignment.onnx"
    if not path.is_file():
        names = derived_models().names
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        onnx.utils.extract_model(str(voice), str(tmp), ["input", "input_lengths", "scales"],
                                 [names.durations, names.prior_mean])
        tmp.replace(path)
    return path


class VoiceText:
    """The voice's text encoder and duration predictor on ONNX Runtime: phoneme ids -> frames per
    id and the prior mean of every id. Both are what Piper itself would use for the sentence."""

    def __init__(self, threads: int = 1) -> None:
        self.session = _session(alignment_model(), threads)
        names = derived_models().names
        self.outputs = [names.durations, names.prior_mean]

    def run(self, ids: np.ndarray, scales: Scales) -> tuple[np.ndarray, np.ndarray]:
        """ids [P] -> (durations [P] int64, prior mean [P, 192] float32)."""
        ids = np.asarray(ids, np.int64)
        durations, mean = self.session.run(self.outputs, {
            "input": ids[None], "input_lengths": np.array([ids.size], np.int64), "scales": scales.array()})
        return durations.reshape(-1).astype(np.int64), np.ascontiguousarray(mean[0].T, np.float32)

    def prior(self, ids: np.ndarray) -> np.ndarray:
        """The prior mean per id [P, 192]; it does not depend on the delivery (scales)."""
        return self.run(ids, Scales())[1]


@cache
def shared_voice_text() -> VoiceText:
    return VoiceText()


@dataclass(frozen=True)
class SentenceTargets:
    ids: np.ndarray  # [P] phoneme ids
    durations: np.ndarray  # [P] frames per id
    tokens: np.ndarray  # [ceil(sum(durations) / stack)] codec tokens
    owners: np.ndarray  # [len(tokens)] id index of each token (see alignment.token_owners)


class PiperTargets:
    """Phoneme ids -> durations (sampled with `Scales.noise_w`, stretched by `Scales.length`) and tokens."""

    def __init__(self, codec: Codec, threads: int = 1) -> None:
        if codec.config.domain != "prior":
            raise ValueError("decoder targets need a prior-domain codec")
        self.codec = codec
        self.voice = VoiceText(threads)

    def __call__(self, ids: np.ndarray, scales: Scales) -> SentenceTargets:
        ids = np.asarray(ids, np.int64)
        durations, mean = self.voice.run(ids, scales)
        tokens = self.codec.encode(expand(mean, durations))
        return SentenceTargets(ids, durations, tokens, token_owners(durations, self.codec.config.stack))
