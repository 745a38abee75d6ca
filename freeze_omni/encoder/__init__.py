"""Streaming speech encoder: causal conv front end and chunk-masked transformer with explicit caches."""

from freeze_omni.encoder.encoder import (
    SCRATCH,
    WHISPER_TINY_EN,
    EncoderCache,
    EncoderConfig,
    EncoderOutput,
    SpeechEncoder,
)
from freeze_omni.encoder.masks import FULL_CONTEXT, UNLIMITED, ChunkConfig, sample_chunk_config
from freeze_omni.encoder.whisper import load_whisper_encoder

__all__ = ["SCRATCH", "WHISPER_TINY_EN", "EncoderCache", "EncoderConfig", "EncoderOutput", "SpeechEncoder",
           "FULL_CONTEXT", "UNLIMITED", "ChunkConfig", "sample_chunk_config", "load_whisper_encoder"]
