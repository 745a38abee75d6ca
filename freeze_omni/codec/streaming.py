"""Packetised decode: codec tokens arrive in packets, PCM leaves in packets, joins stay seamless.

Decoding has two convolutional stages, each with a limited receptive field:
  tokens --latent stage--> z frames --audio stage (HiFi-GAN generator)--> samples
The latent stage is the flow for the prior domain (a change of one frame reaches ~29 frames on
each side, ~17 at 1e-3 of its size) and a plain codebook lookup for the z domain (no context);
the generator reaches ~10 frames on each side.

Every stage runs the same pure function, `decode_packet`, over its own explicit state:
- each packet is decoded together with `left_context` items already played (recomputed and
  dropped), so the start of the new output equals a whole-utterance decode;
- the newest `lookahead` items are held back as right context until the next packet arrives;
- the last `crossfade` output units that were computed with only `lookahead` right context are
  kept back as a provisional tail and blended (linear ramp) into the next packet's recomputation
  of the same units. All packets together have exactly the whole decode's length.
Latency cost of a stage: `lookahead` items plus `crossfade` units. States belong to the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from math import ceil

import numpy as np

# decode(window items, absolute index of window[0]) -> [len(window) * units_per_item, ...]
WindowDecoder = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class StreamConfig:
    left_context: int = 12  # items re-decoded before each packet
    lookahead: int = 4  # newest items held back as right context for the played output
    crossfade: int = 256  # output units of provisional tail blended into the next packet


@dataclass(frozen=True)
class StreamState:
    items: np.ndarray | None = None  # context + pending items (tokens [n] or frames [n, D])
    base: int = 0  # absolute index of items[0] in the stream
    played: int = 0  # items[:played] are context whose output is out (except `tail`)
    tail: np.ndarray | None = None  # provisional output units still to be crossfaded
    units_out: int = 0  # output units emitted so far
    finished: bool = False


def crossfade(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Blend `old` into `new` along the first axis with a linear ramp (old 1 -> 0)."""
    n = len(old)
    if n == 0:
        return new
    ramp = ((np.arange(n, dtype=np.float32) + 0.5) / n).reshape((n,) + (1,) * (np.ndim(new) - 1))
    return (old * (1.0 - ramp) + new * ramp).astype(np.float32)


def decode_packet(decode: WindowDecoder, units_per_item: int, state: StreamState, items,
                  config: StreamConfig, final: bool = False) -> tuple[np.ndarray, StreamState]:
    """Feed the next packet of items; returns (output ready to play, new state).

    With `final=True` everything held is flushed and the stream ends (the packet may be empty).
    An empty output is returned flat (shape [0]); callers reshape it to their unit shape.
    """
    if state.finished:
        raise ValueError("stream already finished: start a new one")
    if not 0 <= config.crossfade <= units_per_item:
        raise ValueError(f"crossfade must be within one item ({units_per_item} units)")
    items = np.asarray(items)
    if state.items is None:
        window = items
    else:
        window = np.concatenate([state.items, items.reshape((-1,) + state.items.shape[1:])])
    tail = state.tail
    start = state.played
    end = len(window) if final else max(start, len(window) - config.lookahead)
    if end == start and not (final and tail is not None and len(tail)):
        return np.zeros(0, np.float32), replace(state, items=window, finished=final)

    output = decode(window, state.base)
    keep_back = 0 if final else config.crossfade
    held = 0 if tail is None else len(tail)
    out = output[start * units_per_item - held: end * units_per_item - keep_back].copy()
    if held:
        out[:held] = crossfade(tail, out[:held])
    new_tail = output[end * units_per_item - keep_back: end * units_per_item].copy()
    first = max(0, end - config.left_context)
    return out, StreamState(window[first:], state.base + first, end - first, new_tail,
                            state.units_out + len(out), final)


# --- the codec's two stages ---------------------------------------------------------------------


@dataclass(frozen=True)
class CodecStreamConfig:
    latent: StreamConfig  # tokens -> z frames (units: frames per token)
    audio: StreamConfig  # z frames -> samples (units: samples per frame)

    @classmethod
    def for_codec(cls, config, flow_left_frames: int = 24, flow_lookahead_frames: int = 12,
                  left_frames: int = 12, lookahead_frames: int = 4, crossfade: int = 256) -> CodecStreamConfig:
        """Context sized in frames for a `CodecConfig`; the z domain needs none in the latent stage."""
        if config.domain == "z":
            latent = StreamConfig(0, 0, 0)
        else:
            # units of the latent stage are frames: blend one frame of the provisional z tail
            latent = StreamConfig(ceil(flow_left_frames / config.stack), ceil(flow_lookahead_frames / config.stack), 1)
        return cls(latent, StreamConfig(left_frames, lookahead_frames, min(crossfade, config.hop)))


@dataclass(frozen=True)
class CodecStream:
    """One utterance being decoded: the state of each stage."""

    latent: StreamState = field(default_factory=StreamState)
    audio: StreamState = field(default_factory=StreamState)
    seed: int = 0  # picks the decode noise of the prior domain

    @property
    def finished(self) -> bool:
        return self.audio.finished


def new_stream(seed: int = 0) -> CodecStream:
    return CodecStream(seed=seed)


def stream_packet(codec, state: CodecStream, tokens, config: CodecStreamConfig | None = None,
                  final: bool = False) -> tuple[np.ndarray, CodecStream]:
    """Tokens of the next packet -> (22.05 kHz PCM ready to play, new state)."""
    config = config or CodecStreamConfig.for_codec(codec.config)
    tokens = codec.check_tokens(tokens)
    z, latent = decode_packet(lambda window, offset: codec.latent(window, offset, state.seed),
                              codec.config.stack, state.latent, tokens, config.latent, final)
    z = z.reshape(-1, codec.config.latent_dim)
    pcm, audio = decode_packet(lambda window, offset: codec.generator(window),
                               codec.config.hop, state.audio, z, config.audio, final)
    return pcm.astype(np.float32), CodecStream(latent, audio, state.seed)


def stream_decode(codec, packets: Iterable, config: CodecStreamConfig | None = None,
                  seed: int = 0) -> Iterator[np.ndarray]:
    """PCM packets for an iterable of token packets (flushes at the end)."""
    state = new_stream(seed)
    for packet in packets:
        pcm, state = stream_packet(codec, state, packet, config)
        if len(pcm):
            yield pcm
    pcm, state = stream_packet(codec, state, [], config, final=True)
    if len(pcm):
        yield pcm
