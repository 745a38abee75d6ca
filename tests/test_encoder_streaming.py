"""`step` over any split of an utterance equals `forward` under the same chunk mask."""

import random

import pytest
import torch

from freeze_omni.encoder import FULL_CONTEXT, SCRATCH, UNLIMITED, WHISPER_TINY_EN, EncoderConfig, SpeechEncoder

SMALL = {
    "whisper": EncoderConfig("whisper", n_mels=80, dim=48, heads=4, layers=2, ffn_dim=96),
    "conv2d": EncoderConfig("conv2d", n_mels=80, dim=48, heads=4, layers=2, ffn_dim=96, conv_channels=8, dropout=0.1),
}
CHUNKINGS = [(8, UNLIMITED), (4, 1), (3, 0), (FULL_CONTEXT, UNLIMITED), (5, 2)]

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder(config: EncoderConfig, seed: int = 0) -> SpeechEncoder:
    torch.manual_seed(seed)
    encoder = SpeechEncoder(config).eval()
    with torch.no_grad():  # random biases and CMVN so that a wrong offset or a dropped term shows
        for p in encoder.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.2)
        if config.front_end == "conv2d":
            encoder.front.set_cmvn(torch.randn(config.n_mels), torch.rand(config.n_mels) + 0.5)
    return encoder


def _stream(encoder: SpeechEncoder, feats: torch.Tensor, chunk_size: int, left_chunks: int,
            rng: random.Random, max_piece: int = 40) -> torch.Tensor:
    cache = encoder.initial_cache(chunk_size, left_chunks, batch=feats.shape[0])
    outs, i = [], 0
    while i < feats.shape[1]:
        n = rng.randint(0, max_piece)
        out, cache = encoder.step(feats[:, i:i + n], cache)
        outs.append(out)
        i += n
    outs.append(encoder.flush(cache))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("front_end", ["whisper", "conv2d"])
@pytest.mark.parametrize("chunk_size,left_chunks", CHUNKINGS)
def test_step_over_random_splits_equals_masked_forward(front_end, chunk_size, left_chunks):
    encoder = _encoder(SMALL[front_end])
    rng = random.Random(chunk_size * 10 + left_chunks)
    feats = torch.randn(2, 181, 80)
    with torch.no_grad():
        full = encoder(feats, torch.tensor([181, 181]), chunk_size, left_chunks)
        streamed = _stream(encoder, feats, chunk_size, left_chunks, rng)
    assert streamed.shape == full.frames.shape
    assert full.lengths.tolist() == [full.frames.shape[1]] * 2
    assert (streamed - full.frames).abs().max() < 1e-4


@pytest.mark.parametrize("front_end", ["whisper", "conv2d"])
def test_padding_in_a_batch_changes_nothing_for_the_real_frames(front_end):
    encoder = _encoder(SMALL[front_end])
    short, long = torch.randn(1, 70, 80), torch.randn(1, 100, 80)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 0, 0, 30), value=5.0), long])
    with torch.no_grad():
        both = encoder(batch, torch.tensor([70, 100]), 4, 1)
        alone = encoder(short, torch.tensor([70]), 4, 1)
    n = alone.lengths.item()
    assert both.lengths[0].item() == n
    assert torch.isfinite(both.frames).all()
    assert (both.frames[0, :n] - alone.frames[0]).abs().max() < 1e-5


def test_a_chunk_does_not_see_the_future_and_left_context_is_bounded():
    encoder = _encoder(SMALL["whisper"])
    feats = torch.randn(1, 96, 80)
    changed = feats.clone()
    changed[:, 48:] += 1.0  # features of frames 24.. after subsampling
    with torch.no_grad():
        a = encoder(feats, torch.tensor([96]), 8, 1).frames
        b = encoder(changed, torch.tensor([96]), 8, 1).frames
        cache = encoder.initial_cache(8, 1)
        for i in range(0, 96, 16):
            _, cache = encoder.step(feats[:, i:i + 16], cache)
            assert cache.layers[0].frames <= 16  # own chunk + one chunk of left context
    assert torch.equal(a[:, :24], b[:, :24])
    assert not torch.allclose(a[:, 24:], b[:, 24:])


def test_positions_keep_working_past_thirty_seconds():
    encoder = _encoder(SMALL["whisper"])
    feats = torch.randn(1, 3400, 80)  # 34 s: 1700 frames after subsampling, past Whisper's 1500
    with torch.no_grad():
        full = encoder(feats, torch.tensor([3400]), 8, 2).frames
        streamed = _stream(encoder, feats, 8, 2, random.Random(0), max_piece=200)
    assert full.shape[1] == 1700
    assert (streamed - full).abs().max() < 1e-4
    assert torch.isfinite(full).all()


def test_conv2d_front_end_keeps_cmvn_with_the_weights():
    encoder = _encoder(SMALL["conv2d"])
    mean = encoder.front.cmvn_mean.clone()
    restored = SpeechEncoder(SMALL["conv2d"])
    restored.load_state_dict(encoder.state_dict())
    assert torch.equal(restored.front.cmvn_mean, mean)


def test_published_configurations_build_with_their_sizes():
    whisper, scratch = SpeechEncoder(WHISPER_TINY_EN), SpeechEncoder(SCRATCH)
    assert (WHISPER_TINY_EN.subsampling, SCRATCH.subsampling) == (2, 4)
    with torch.no_grad():
        assert whisper(torch.zeros(1, 32, 80), torch.tensor([32]), 8, UNLIMITED).frames.shape == (1, 16, 384)
        assert scratch.eval()(torch.zeros(1, 32, 80), torch.tensor([32]), 4, UNLIMITED).frames.shape == (1, 8, 256)
    assert 5e6 < sum(p.numel() for p in scratch.parameters()) < 9e6
