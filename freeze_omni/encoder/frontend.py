"""Which acoustic features each encoder front end reads, offline and as a stream.

The Whisper-initialised encoder needs the log-mel it was pretrained on; the from-scratch design
reads Kaldi fbank. Both streams share one interface (`initial_state`, `accept`, `flush`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from freeze_omni.audio.features import FeatureStream, fbank
from freeze_omni.audio.whisper_mel import MelStream, log_mel
from freeze_omni.encoder.encoder import EncoderConfig


def featurizer(config: EncoderConfig) -> Callable[[np.ndarray], np.ndarray]:
    """16 kHz float audio -> [frames, n_mels] for this encoder."""
    return log_mel if config.front_end == "whisper" else fbank


def feature_stream(config: EncoderConfig) -> FeatureStream | MelStream:
    return MelStream() if config.front_end == "whisper" else FeatureStream()
