"""Codebook encode/decode with tiny codebooks trained on one sentence, weights round trip, k-means."""

import numpy as np
import pytest
import torch

from freeze_omni.codec.model import Codec, CodecConfig, frame_noise, nearest, stack_frames
from freeze_omni.codec.piper_latent import HOP
from freeze_omni.codec.train import LatentSet, assign, kmeans, train_codec, training_vectors


@pytest.fixture(scope="module", params=[("prior", 2), ("prior", 1), ("z", 2)], ids=["prior-x2", "prior-x1", "z-x2"])
def codec(request, piper_sentences):
    domain, stack = request.param
    latents = LatentSet([piper_sentences[0]], np.array([0]), ["train"])
    codec, _ = train_codec(latents, CodecConfig(codes=16, stack=stack, domain=domain), iterations=3)
    return codec


def test_stack_frames_pads_with_last_frame():
    z = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3)
    stacked = stack_frames(z, 2)
    assert stacked.shape == (3, 6)
    assert torch.equal(stacked[2], torch.cat([z[4], z[4]]))
    assert stack_frames(z, 1).shape == (5, 3)
    assert stack_frames(torch.zeros(0, 3), 2).shape == (0, 6)


def test_encode_decode_round_trip(codec, piper_sentences):
    test = piper_sentences[1]
    tokens = codec.encode_sentence(test)
    stack = codec.config.stack
    assert tokens.dtype == np.int64 and tokens.shape == (-(-test.frames // stack),)
    assert tokens.min() >= 0 and tokens.max() < codec.config.codes
    audio = codec.decode(tokens)
    assert audio.shape == (len(tokens) * stack * HOP,) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05
    assert codec.decode_16k(tokens).shape[0] == pytest.approx(len(audio) * 16000 / 22050, abs=2)
    ids = np.arange(codec.config.codes)  # codebook vectors encode to themselves
    assert np.array_equal(codec.encode(codec.vectors(ids)), ids)


def test_decode_noise_is_a_function_of_position(codec, piper_sentences):
    tokens = codec.encode_sentence(piper_sentences[1])
    np.testing.assert_array_equal(codec.decode(tokens, seed=3), codec.decode(tokens, seed=3))
    different = not np.allclose(codec.decode(tokens, seed=3), codec.decode(tokens, seed=4))
    assert different == (codec.config.domain == "prior")
    np.testing.assert_array_equal(frame_noise(7, 250, 300), frame_noise(7, 0, 600)[250:550])
    assert frame_noise(7, 5, 0).shape == (0, 192)


def test_decode_rejects_out_of_range_tokens(codec):
    with pytest.raises(ValueError):
        codec.decode([0, codec.config.codes])
    with pytest.raises(ValueError):
        codec.decode([-1])


def test_save_load_fp16(codec, tmp_path):
    path = codec.save(tmp_path / "codec.safetensors", {"note": "tiny"})
    loaded = Codec.load(path)
    assert loaded.config == codec.config
    assert torch.allclose(loaded.codebook, codec.codebook, rtol=1e-3, atol=1e-2)
    assert (loaded.log_scales is None) == (codec.config.domain == "z")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
        assert f.metadata()["note"] == "tiny"


def test_config_and_shapes_are_checked():
    with pytest.raises(ValueError):
        Codec(torch.zeros(8, 100), CodecConfig(codes=8, stack=1, domain="z"))
    with pytest.raises(ValueError):
        Codec(torch.zeros(8, 192), CodecConfig(codes=8, stack=1, domain="prior"))  # no log-scales
    with pytest.raises(ValueError):
        CodecConfig(domain="mel")


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(300, 12, generator=g), torch.randn(20, 12, generator=g)
    assert torch.equal(nearest(x, c, chunk=64), torch.cdist(x, c).argmin(1))
    index, error = assign(x.half(), c, chunk=50)
    assert (index == torch.cdist(x.half().float(), c).argmin(1)).float().mean() > 0.99
    assert torch.allclose(error, ((x.half().float() - c[index]) ** 2).sum(1), atol=1e-3)


@pytest.mark.parametrize("domain", ["prior", "z"])
def test_kmeans_beats_a_random_codebook(piper_sentences, domain):
    latents = LatentSet([piper_sentences[0]], np.array([0]), ["train"])
    vectors, _ = training_vectors(latents, CodecConfig(codes=16, stack=2, domain=domain))
    result = kmeans(vectors, 16, iterations=6, seed=0)
    assert result.centroids.shape == (16, 384)
    rows = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(1))[:16]].float()
    random_distortion = assign(vectors, rows)[1].mean().item() / 384
    assert result.distortion[-1] < 0.8 * random_distortion
    assert all(b <= a + 1e-4 for a, b in zip(result.distortion[1:], result.distortion[2:]))  # Lloyd never worsens


def test_kmeans_needs_enough_vectors():
    with pytest.raises(ValueError):
        kmeans(torch.randn(5, 4), 8)


def test_training_vectors_group_each_sentence(piper_sentences):
    latents = LatentSet(list(piper_sentences), np.array([0, 1]), ["a", "b"])
    vectors, log_scales = training_vectors(latents, CodecConfig(codes=4, stack=2, domain="prior"))
    assert vectors.shape == (sum(-(-s.frames // 2) for s in piper_sentences), 384) and vectors.dtype == torch.float16
    assert log_scales.shape == vectors.shape
    assert training_vectors(latents, CodecConfig(codes=4, stack=2, domain="z"))[1] is None
