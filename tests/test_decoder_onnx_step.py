"""The AR step on ONNX Runtime: same logits and symbols as the torch step, exported once, never trusted blindly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from freeze_omni.decoder import onnx_step
from freeze_omni.decoder.alignment import interleave
from freeze_omni.decoder.generate import speak_ids, start, step
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.onnx_step import OnnxStep, load_onnx_step
from freeze_omni.decoder.sampling import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = DecoderConfig(codes=64, phoneme_symbols=20, llm_hidden=12, dim=32, heads=4, encoder_layers=1,
                       decoder_layers=2, prefix_layers=1, dropout=0.0, prefix_bias=-0.5)


def _model(seed: int = 0) -> SpeechDecoder:
    torch.manual_seed(seed)
    model = SpeechDecoder(CONFIG, codebook=0.25 * torch.randn(CONFIG.codes, CONFIG.code_dim)).eval()
    torch.nn.init.normal_(model.prefix.values.weight)  # a prefix that changes the output
    return model


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    model = _model()
    step_graph = load_onnx_step(model.decoder, folder=tmp_path_factory.mktemp("step"))
    assert isinstance(step_graph, OnnxStep)
    return model, step_graph


@pytest.mark.parametrize("with_prefix", [False, True])
def test_onnx_logits_equal_torch_over_a_sentence(parts, with_prefix):
    model, graph = parts
    rng = np.random.default_rng(3)
    ids = rng.integers(0, CONFIG.phoneme_symbols, 8)
    aligned = interleave(rng.integers(0, CONFIG.codes, 40), np.sort(rng.integers(0, 8, 40)), 8, CONFIG.vocab)
    hidden = torch.randn(5, CONFIG.llm_hidden) if with_prefix else None
    state = start(model, ids, hidden)
    cache = graph.new_cache(state.prefix, capacity=2)  # grows 2 -> 4 -> ... -> 64 over the sentence
    capacities, caches, worst = set(), None, 0.0
    with torch.no_grad():
        for s in range(len(aligned.targets)):  # 48 steps, teacher-forced
            symbol, pointer, count = int(aligned.inputs[s]), int(aligned.pointer[s]), int(aligned.count[s])
            expected, caches = model.decoder.step(torch.tensor([symbol]), state.encoded[pointer][None],
                                                  torch.tensor([count]), s, caches, state.prefix)
            got = graph(symbol, state.encoded[pointer].numpy(), count, s, cache)
            worst = max(worst, float((torch.from_numpy(got) - expected[0]).abs().max()))
            capacities.add(cache.capacity)
    assert worst < 1e-4
    assert len(capacities) >= 4 and cache.length == len(aligned.targets)
    assert cache.prefix == (5 if with_prefix else 0)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_same_seed_same_symbols_on_both_paths(parts, with_prefix):
    model, graph = parts
    hidden = torch.randn(4, CONFIG.llm_hidden) if with_prefix else None
    ids = np.arange(6)
    for seed in range(3):
        sampling = SamplingConfig(top_k=3, max_tokens_per_phoneme=5, seed=seed)
        torch_tokens = speak_ids(model, ids, sampling, hidden)
        onnx_tokens = speak_ids(model, ids, sampling, hidden, graph)
        assert len(torch_tokens) > 0 and onnx_tokens.tolist() == torch_tokens.tolist()


def test_onnx_state_follows_the_alignment_and_stops(parts):
    model, graph = parts
    state = start(model, np.arange(4), seed=2, onnx_step=graph)
    sampling = SamplingConfig(top_k=2, max_tokens_per_phoneme=3, seed=2)
    symbols = []
    while not state.done:
        symbols.append(step(model, state, sampling))
    assert symbols[-1] == CONFIG.vocab.stop and symbols.count(CONFIG.vocab.advance) == 3
    assert state.caches.length == len(symbols)
    with pytest.raises(ValueError):  # a cache must be stepped in order
        graph(CONFIG.vocab.bos, state.encoded[0].numpy(), 0, 0, state.caches)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_is_cached_and_a_corrupt_file_is_replaced(tmp_path, monkeypatch):
    model = _model(1)
    exports = []
    real_export = onnx_step.export_step
    monkeypatch.setattr(onnx_step, "export_step", lambda decoder: exports.append(1) or real_export(decoder))
    first = load_onnx_step(model.decoder, folder=tmp_path)
    graph_file = next(tmp_path.glob("*.onnx"))
    assert first is not None and len(exports) == 1 and len(_files(tmp_path)) == 2  # the graph and its manifest
    assert load_onnx_step(model.decoder, folder=tmp_path) is not None and len(exports) == 1  # reused

    good = graph_file.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # still parses as ONNX, but a weight has changed
    graph_file.write_bytes(bytes(damaged))
    again = load_onnx_step(model.decoder, folder=tmp_path)
    assert again is not None and len(exports) == 2 and graph_file.read_bytes() == good
    graph_file.write_bytes(good[:1000])  # truncated
    assert load_onnx_step(model.decoder, folder=tmp_path) is not None and len(exports) == 3
    assert graph_file.read_bytes() == good and not list(tmp_path.glob("*.tmp*"))

    manifest = next(tmp_path.glob("*.json"))
    assert json.loads(manifest.read_text())["format"] == onnx_step.FORMAT
    with torch.no_grad():
        model.decoder.norm.weight.mul_(1.5)  # other weights: another file
    assert load_onnx_step(model.decoder, folder=tmp_path) is not None and len(exports) == 4
    assert len(_files(tmp_path)) == 4


def test_export_failure_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch):
    from freeze_omni.codec.model import Codec, CodecConfig
    from freeze_omni.decoder.speaker import speaker_for_inference

    def broken(decoder):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnx_step, "export_step", broken)
    monkeypatch.setattr(onnx_step, "step_folder", lambda: tmp_path)
    model = _model(2)
    with pytest.warns(RuntimeWarning, match="stays on PyTorch") as warned:
        assert load_onnx_step(model.decoder) is None
    assert len(warned) == 1 and not list(tmp_path.iterdir())
    config = CodecConfig(codes=CONFIG.codes)
    codec = Codec(torch.randn(CONFIG.codes, config.vector_dim), config,
                  torch.full((CONFIG.codes, config.vector_dim), -1.0))
    with pytest.warns(RuntimeWarning):
        speaker = speaker_for_inference(model, codec)
    assert speaker.onnx_step is None


def test_a_graph_that_disagrees_with_torch_is_not_cached(tmp_path, monkeypatch):
    model = _model(3)
    real_export = onnx_step.export_step

    def wrong(decoder):
        other = _model(4).decoder
        return real_export(other)

    monkeypatch.setattr(onnx_step, "export_step", wrong)
    with pytest.warns(RuntimeWarning, match="differs from the torch step"):
        assert load_onnx_step(model.decoder, folder=tmp_path) is None
    assert not list(tmp_path.iterdir())
