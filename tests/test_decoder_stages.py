"""decoder-tts and decoder-prefix stages: train, report held-out WER, resume, export."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.codec.model import Codec
from freeze_omni.decoder.export import export_prefix, export_tts
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.weights import load_decoder, save_decoder
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages.decoder_prefix import DecoderPrefixSettings, DecoderPrefixStage
from freeze_omni.train.stages.decoder_tts import DecoderTTSSettings, DecoderTTSStage, length_batches

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(dim=32, heads=4, encoder_layers=1, decoder_layers=1, prefix_layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def codec():
    return Codec.load()


def _losses(folder):
    rows = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["eval"] for r in rows if "eval" in r]


def test_length_batches_respect_the_budget():
    import random

    lengths = [5, 50, 7, 30, 30, 12, 200]
    batches = length_batches(lengths, 60, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 60 for b in batches)


def test_tts_stage_trains_evaluates_resumes_and_exports(tmp_path, codec):
    stage = dict(texts=4, eval_sentences=1, max_batch_symbols=400, eval_max_tokens_per_phoneme=2,
                 data=str(tmp_path / "data"), **TINY)
    settings = DecoderTTSSettings.from_dict(stage)
    config = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=3, eval_every=3, checkpoint_every=1,
                         warmup_steps=1, threads=1, stage=stage)  # the checkpoint keeps the settings for export
    result = train(DecoderTTSStage(settings, codec), config)
    losses, evals = _losses(tmp_path / "run")
    assert result["finished"] and losses and all(math.isfinite(v) for v in losses)
    assert set(evals[-1]) == {"wer", "cer"} and evals[-1]["wer"] >= 0
    assert train(DecoderTTSStage(settings, codec), TrainConfig(**{**config.__dict__, "max_steps": 4}))["step"] == 4
    path = export_tts(tmp_path / "run", tmp_path / "decoder.safetensors")
    model = load_decoder(path)
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    weight = checkpoint["decoder.decoder.head.query.weight"]
    assert torch.allclose(model.decoder.head.query.weight, weight.half().float())
    assert torch.allclose(model.decoder.head.codebook, codec.codebook.half().float())  # the codec it speaks


def test_prefix_stage_trains_only_the_prefix(tmp_path, codec):
    hf_model, tokenizer = tiny_hf_model("llama")
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    torch.manual_seed(0)
    base = SpeechDecoder(DecoderConfig(codes=codec.config.codes, code_dim=codec.config.vector_dim, phoneme_symbols=shared_phonemizer().symbols,
                                       llm_hidden=llm.hidden_size, **TINY))
    base_path = save_decoder(base, tmp_path / "base.safetensors")
    settings = DecoderPrefixSettings(decoder=str(base_path), questions=2, eval_questions=1, max_batch_symbols=600,
                                     eval_max_tokens_per_phoneme=2,
                                     data=str(tmp_path / "data"))
    config = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=3, eval_every=3, checkpoint_every=1,
                         warmup_steps=1, threads=1, learning_rate=1e-2)
    stage = DecoderPrefixStage(settings, llm, codec)
    assert stage.items and all(i.hidden.shape[1] == llm.hidden_size for i in stage.items)
    result = train(stage, config)
    assert set(result["eval"]) == {"wer", "cer", "wer_no_prefix", "cer_no_prefix"}
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    before = load_decoder(base_path).state_dict()
    frozen = {k.removeprefix("decoder."): v for k, v in saved.items() if not k.startswith("decoder.prefix.")}
    assert set(frozen) == {k for k in before if not k.startswith("prefix.")}  # the whole model is saved...
    assert all(torch.equal(v, before[k]) for k, v in frozen.items())  # ...and only the prefix changed
    trained = export_prefix(tmp_path / "run", base_path, tmp_path / "decoder.safetensors")
    model, before = load_decoder(trained), load_decoder(base_path)
    assert torch.equal(model.decoder.head.query.weight, before.decoder.head.query.weight)
    assert not torch.equal(model.prefix.values.weight, before.prefix.values.weight)
