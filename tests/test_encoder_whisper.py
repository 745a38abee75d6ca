"""Whisper tiny.en weights: CTranslate2 reader, conversion cache, and agreement with CTranslate2's encoder."""

import struct

import numpy as np
import pytest
import torch

from freeze_omni.encoder.ct2 import read_ct2
from freeze_omni.encoder.positions import sinusoids
from freeze_omni.encoder.whisper import cached_encoder_weights, load_whisper_encoder, tiny_en_model_bin
from freeze_omni.errors import FreezeOmniError

pytestmark = pytest.mark.usefixtures("one_thread")


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, array: np.ndarray, dtype_id: int) -> bytes:
    head = _string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
    return head + struct.pack("<BI", dtype_id, array.nbytes) + array.tobytes()


def test_reader_parses_the_layout_across_parts_and_resolves_aliases(tmp_path):
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = (struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, 3)
            + _variable("decoder/x", np.array([7], dtype=np.int8).reshape(()), 1)
            + _variable("encoder/w", weight, 4)
            + _variable("encoder/num_heads", np.array(6, dtype=np.int16), 2)
            + struct.pack("<I", 1) + _string("encoder/w_alias") + _string("encoder/w"))
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(blob[:37])
    parts[1].write_bytes(blob[37:])
    model = read_ct2(parts, prefix="encoder/")
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    assert sorted(model.variables) == ["encoder/num_heads", "encoder/w", "encoder/w_alias"]
    np.testing.assert_array_equal(model.variables["encoder/w"], weight)
    np.testing.assert_array_equal(model.variables["encoder/w_alias"], weight)
    assert int(model.variables["encoder/num_heads"]) == 6
    parts[1].write_bytes(blob[37:-20])
    with pytest.raises(FreezeOmniError):
        read_ct2(parts)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny.en converted into a fresh cache directory (the conversion itself is under test)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREEZE_OMNI_CACHE", str(tmp_path_factory.mktemp("cache")))
        encoder = load_whisper_encoder()
        assert cached_encoder_weights().is_file()
    return encoder


def test_dimensions_come_from_the_file(tiny):
    cfg = tiny.config
    assert (cfg.front_end, cfg.n_mels, cfg.dim, cfg.heads, cfg.layers, cfg.ffn_dim) == ("whisper", 80, 384, 6, 4, 1536)
    assert tiny.front.conv1.weight.dtype == torch.float32


def test_stored_positions_are_the_sinusoids_we_compute():
    table = read_ct2(tiny_en_model_bin(), prefix="encoder/position").variables["encoder/position_encodings/encodings"]
    ours = sinusoids(torch.arange(table.shape[0]), table.shape[1]).numpy()
    assert np.abs(table.astype(np.float32) - ours).max() < 1e-3


def test_full_context_output_reproduces_ctranslate2(tiny):
    """On Whisper's own (centred, globally scaled, 30 s) features our modules give CT2's encoder output."""
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    from freeze_omni.audio.io import read_audio
    from freeze_omni.paths import EXAMPLES_DIR

    audio = read_audio(EXAMPLES_DIR / "question.wav")
    feats = FeatureExtractor()(np.pad(audio, (0, 30 * 16000 - audio.size)))[:, :3000]  # CT2 expects [80, 3000]
    reference = ctranslate2.models.Whisper(str(tiny_en_model_bin().parent), device="cpu", compute_type="float32",
                                           intra_threads=2)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None]))))
    with torch.no_grad():
        ours = tiny.forward_original(torch.from_numpy(feats.T[None].copy())).numpy()
    assert ours.shape == theirs.shape == (1, 1500, 384)
    cosine = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() > 0.9999
    assert np.abs(ours - theirs).max() < 0.01 * np.abs(theirs).max()


def test_causal_front_end_is_whisper_delayed_by_one_frame(tiny):
    feats = torch.randn(1, 64, 80)
    with torch.no_grad():
        causal, centred = tiny.front(feats), tiny.front.forward_centred(feats)
    assert (causal[0, 2:] - centred[0, 1:-1]).abs().max() < 1e-4


def test_streaming_tiny_en_equals_its_masked_forward(tiny):
    """The real weights through MelStream chunks: step per 160 ms chunk == forward under the chunk mask."""
    from freeze_omni.audio.io import read_audio
    from freeze_omni.audio.whisper_mel import MelStream, log_mel
    from freeze_omni.paths import EXAMPLES_DIR

    audio = read_audio(EXAMPLES_DIR / "question.wav")
    stream = MelStream()
    mel_state, cache = stream.initial_state(), tiny.initial_cache(chunk_size=8, left_chunks=4)
    outs = []
    with torch.no_grad():
        for start in range(0, audio.size, 1000):
            chunks, mel_state = stream.accept(audio[start:start + 1000], mel_state)
            for chunk in chunks:
                out, cache = tiny.step(torch.from_numpy(chunk)[None], cache)
                assert out.shape == (1, 8, 384)  # 160 ms in, 8 frames out, nothing held back
                outs.append(out)
        tail, _ = stream.flush(mel_state)
        out, cache = tiny.step(torch.from_numpy(tail)[None], cache)
        outs += [out, tiny.flush(cache)]
        feats = torch.from_numpy(log_mel(audio))[None]
        full = tiny(feats, torch.tensor([feats.shape[1]]), 8, 4).frames
    streamed = torch.cat(outs, dim=1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max() < 1e-4
