"""Packetised decode vs whole decode: same length, close waveform, no clicks at the joins."""

import numpy as np
import pytest

from freeze_omni.codec.model import CodecConfig
from freeze_omni.codec.streaming import (
    CodecStreamConfig, StreamConfig, StreamState, crossfade, decode_packet, new_stream, stream_decode, stream_packet,
)
from freeze_omni.codec.train import LatentSet, train_codec


class BlurDecoder:
    """A stand-in convolutional decoder: each item -> a constant run of `units` samples, then a
    moving average reaching `reach` samples on each side (context beyond it cannot matter)."""

    units = 8
    reach = 11

    def __call__(self, window, offset):
        signal = np.repeat(np.asarray(window, np.float32), self.units)
        kernel = np.ones(2 * self.reach + 1, np.float32) / (2 * self.reach + 1)
        return np.convolve(signal, kernel, mode="same").astype(np.float32)


def split(tokens, sizes):
    return np.split(tokens, np.cumsum(sizes)[:-1])


def run_stream(decode, units, packets, config):
    state, pieces = StreamState(), []
    for packet in packets:
        out, state = decode_packet(decode, units, state, packet, config)
        pieces.append(out)
    out, state = decode_packet(decode, units, state, [], config, final=True)
    return np.concatenate(pieces + [out]), state


def random_sizes(total, rng, low, high):
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(low, high + 1), total - sum(sizes))))
    return sizes


def test_crossfade_ramps_from_old_to_new():
    old, new = np.ones(4, np.float32), np.zeros(4, np.float32)
    mixed = crossfade(old, new)
    assert np.all(np.diff(mixed) < 0) and 0.5 < mixed[0] <= 1 and 0 <= mixed[-1] < 0.5
    assert crossfade(np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)).shape == (4, 3)
    assert crossfade(np.zeros(0, np.float32), new) is new


@pytest.mark.parametrize("sizes", [[1] * 30, [3, 5, 1, 7, 4, 10], [30], [2, 0, 0, 28]])
def test_enough_context_equals_whole_decode(sizes):
    decoder = BlurDecoder()
    tokens = np.random.default_rng(0).integers(0, 50, 30)
    config = StreamConfig(left_context=2, lookahead=2, crossfade=4)  # 16 units >= reach on each side
    streamed, state = run_stream(decoder, decoder.units, split(tokens, sizes), config)
    np.testing.assert_allclose(streamed, decoder(tokens, 0), atol=1e-5)
    assert state.finished and state.units_out == 30 * decoder.units


def test_offsets_are_absolute_positions():
    seen = []

    def decode(window, offset):
        seen.append((offset, len(window)))
        return np.repeat(np.arange(offset, offset + len(window), dtype=np.float32), 2)

    streamed, _ = run_stream(decode, 2, split(np.zeros(20), [5, 5, 10]), StreamConfig(3, 1, 0))
    np.testing.assert_array_equal(streamed, np.repeat(np.arange(20, dtype=np.float32), 2))
    assert all(offset >= 0 for offset, _ in seen) and seen[-1][0] + seen[-1][1] == 20


def test_state_keeps_only_context_and_pending_items():
    decoder = BlurDecoder()
    config = StreamConfig(left_context=3, lookahead=2, crossfade=4)
    pcm, state = decode_packet(decoder, 8, StreamState(), np.arange(1), config)
    assert len(pcm) == 0 and len(state.items) == 1  # held back as look-ahead
    pcm, state = decode_packet(decoder, 8, state, np.arange(20), config)
    assert len(pcm) == 19 * 8 - 4 and len(state.tail) == 4
    assert len(state.items) == 3 + 2 and state.played == 3 and state.base == 16
    with pytest.raises(ValueError):
        decode_packet(decoder, 8, StreamState(finished=True), [1], config)
    with pytest.raises(ValueError):
        decode_packet(decoder, 8, StreamState(), [1, 2], StreamConfig(crossfade=9))


@pytest.fixture(scope="module", params=[("prior", 2), ("prior", 1), ("z", 2)], ids=["prior-x2", "prior-x1", "z-x2"])
def codec_tokens(request, piper_sentences):
    domain, stack = request.param
    latents = LatentSet([piper_sentences[0]], np.array([0]), ["train"])
    codec, _ = train_codec(latents, CodecConfig(codes=32, stack=stack, domain=domain), iterations=3)
    return codec, codec.encode_sentence(piper_sentences[1])


def join_positions(sizes, samples_per_token):
    return np.cumsum(sizes)[:-1] * samples_per_token


def test_piper_packets_join_without_clicks(codec_tokens):
    codec, tokens = codec_tokens
    spt = codec.config.samples_per_token
    whole = codec.decode(tokens, seed=5)
    sizes = random_sizes(len(tokens), np.random.default_rng(1), 3, 16 // codec.config.stack)
    config = CodecStreamConfig.for_codec(codec.config)
    streamed = np.concatenate(list(stream_decode(codec, split(tokens, sizes), config, seed=5)))
    assert len(streamed) == len(whole) == len(tokens) * spt

    # close to the whole decode in energy and in almost every sample
    error = streamed - whole
    assert (error ** 2).sum() < 0.01 * (whole ** 2).sum()
    assert np.mean(np.abs(error) < 0.01) > 0.95

    # no discontinuity spikes: sample-to-sample jumps around each join stay within what the
    # whole decode has there and elsewhere
    jumps, whole_jumps = np.abs(np.diff(streamed)), np.abs(np.diff(whole))
    near = np.zeros(len(jumps), bool)
    held = config.latent.lookahead * spt + config.audio.lookahead * codec.config.hop + config.audio.crossfade
    for join in join_positions(sizes, spt):
        near[max(0, join - held - 64): join + 64] = True
    assert jumps[near].max() <= 1.2 * max(whole_jumps[near].max(), jumps[~near].max())


def test_stream_state_is_per_utterance(codec_tokens):
    codec, tokens = codec_tokens
    pcm, state = stream_packet(codec, new_stream(), tokens[:40])
    pcm_end, state = stream_packet(codec, state, tokens[40:], final=True)
    assert state.finished and len(pcm) + len(pcm_end) == len(tokens) * codec.config.samples_per_token
    with pytest.raises(ValueError):
        stream_packet(codec, state, tokens[:2])


def test_piper_packets_without_context_differ(codec_tokens):
    """The check above has teeth: packets decoded alone (no context, no crossfade) are far off."""
    codec, tokens = codec_tokens
    spt = codec.config.samples_per_token
    whole = codec.decode(tokens)
    sizes = random_sizes(len(tokens), np.random.default_rng(1), 3, 16 // codec.config.stack)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    naive = np.concatenate([codec.decode(p, offset=o) for p, o in zip(split(tokens, sizes), offsets)])
    error = naive - whole
    assert (error ** 2).sum() > 0.05 * (whole ** 2).sum()
    jumps = np.abs(np.diff(naive))
    at_joins = [jumps[j - 2: j + 1].max() for j in join_positions(sizes, spt)]
    assert max(at_joins) > 1.5 * np.abs(np.diff(whole)).max() or (error ** 2).sum() > 0.2 * (whole ** 2).sum()
