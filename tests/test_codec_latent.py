"""The Piper voice cut into parts: latents and durations while it speaks; the parts give back Piper."""

import numpy as np
import onnxruntime as ort
import pytest

from freeze_omni.codec.piper_latent import HOP, LATENT_DIM, Flow, Generator, PiperLatent, Scales, voice_files

QUIET = Scales(0.0, 1.0, 0.0)  # no sampling noise: every path is deterministic


@pytest.fixture(scope="module")
def speaker():
    return PiperLatent(threads=1)


@pytest.fixture(scope="module")
def quiet_sentence(speaker):
    (phonemes,) = speaker.phonemize("Speech goes in and speech comes out.")
    return speaker.latent(phonemes, QUIET)


def test_latent_shapes_and_durations(speaker):
    sentences = speaker.speak("Hello there. How are you doing today?")
    assert len(sentences) == 2
    for sentence in sentences:
        assert sentence.z.shape == (sentence.frames, LATENT_DIM) and sentence.z.dtype == np.float32
        assert sentence.frames > 10
        ids = len(sentence.phoneme_ids)
        assert sentence.durations.shape == (ids,) and sentence.durations.min() >= 0
        assert int(sentence.durations.sum()) == sentence.frames
        assert sentence.prior_mean.shape == sentence.prior_log_scale.shape == (ids, LATENT_DIM)
        mean, log_scale = sentence.prior_frames()
        assert mean.shape == log_scale.shape == sentence.z.shape
        assert np.isfinite(sentence.z).all() and np.isfinite(mean).all()


def test_length_scale_stretches_frames(speaker):
    (phonemes,) = speaker.phonemize("The weather is nice today")
    slow = speaker.latent(phonemes, Scales(0.0, 1.5, 0.0))
    fast = speaker.latent(phonemes, Scales(0.0, 0.75, 0.0))
    assert slow.frames > 1.6 * fast.frames


def test_generator_gives_back_pipers_own_audio(quiet_sentence):
    audio = Generator(threads=1)(quiet_sentence.z)
    assert audio.shape == (quiet_sentence.frames * HOP,) and audio.dtype == np.float32
    whole = ort.InferenceSession(str(voice_files()[0]), providers=["CPUExecutionProvider"])
    ids = quiet_sentence.phoneme_ids
    expected = whole.run(None, {"input": ids[None], "input_lengths": np.array([ids.size], np.int64),
                                "scales": QUIET.array()})[0].reshape(-1)
    np.testing.assert_allclose(audio, expected, atol=1e-4)


def test_flow_of_the_prior_mean_is_z_without_noise(quiet_sentence):
    z = Flow(threads=1)(quiet_sentence.prior_frames()[0])
    np.testing.assert_allclose(z, quiet_sentence.z, atol=1e-4)


def test_parts_reject_bad_shapes():
    for part in (Generator(threads=1), Flow(threads=1)):
        with pytest.raises(ValueError):
            part(np.zeros((10, 80), np.float32))
    assert Generator(threads=1)(np.zeros((0, LATENT_DIM), np.float32)).size == 0
    assert Flow(threads=1)(np.zeros((0, LATENT_DIM), np.float32)).shape == (0, LATENT_DIM)
