import json
import math

import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.encoder import UNLIMITED
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.asr import evaluate_asr, load_recognizer
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages import encoder_qa
from freeze_omni.train.stages.encoder_llm import (
    TRANSCRIPT_TOKENS_EXTRA, TRANSCRIPT_TOKENS_PER_EMBEDDING, EncoderLLMSettings, EncoderLLMStage,
)


def test_stage_trains_the_speech_side_and_never_the_llm(tiny_corpus, tmp_path):
    hf_model, tokenizer = tiny_hf_model("qwen2")
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    llm_before = {k: v.clone() for k, v in llm.state_dict().items()}
    settings = EncoderLLMSettings(corpus=str(tiny_corpus), max_batch_seconds=3.0, eval_utterances=2,
                                  embedding_ctc_weight=0.5, adapter_norm=True, encoder_lr_scale=0.0,
                                  answer_lead="You said: \"", answer_close="\"")
    stage = EncoderLLMStage(settings, llm=llm)
    speech_input = stage.module.speech_input
    gain = float(llm.model.embed.weight.float().pow(2).mean().sqrt())
    assert torch.allclose(speech_input.adapter.norm.weight, torch.full_like(speech_input.adapter.norm.weight, gain))
    prompt_before = speech_input.prompt.detach().clone()
    encoder_before = {k: v.clone() for k, v in speech_input.encoder.state_dict().items()}
    config = TrainConfig(out_dir=str(tmp_path), max_steps=3, eval_every=3, checkpoint_every=3, threads=2,
                         learning_rate=1e-3, warmup_steps=1, log_every=1)
    result = train(stage, config)
    assert result["finished"] and set(result["eval"]) == {"wer_160ms", "cer_160ms"}
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["embedding_ctc"]) for r in records if "loss" in r)
    assert not torch.equal(speech_input.prompt, prompt_before)
    for name, value in speech_input.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name  # encoder_lr_scale = 0
    for name, value in llm.state_dict().items():
        assert torch.equal(value, llm_before[name]), name
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    assert not any(k.startswith("llm.") for k in checkpoint["model"])
    with pytest.raises(FreezeOmniError, match="no token readout"):
        load_recognizer(tmp_path / "last.pt", "tokens", llm)
    assert any(k.startswith("speech_input.adapter.") for k in checkpoint["model"])

    # stage 3 starts from this checkpoint only with the same adapter
    with pytest.raises(FreezeOmniError, match="adapter_norm"):
        encoder_qa.load_speech_input(encoder_qa.EncoderQASettings(speech_checkpoint=str(tmp_path / "last.pt")), llm)
    same = encoder_qa.load_speech_input(encoder_qa.EncoderQASettings(speech_checkpoint=str(tmp_path / "last.pt"),
                                                                     adapter_norm=True), llm)
    assert torch.equal(same.adapter.norm.weight, speech_input.adapter.norm.weight)


def test_token_readout_learns_by_ctc_alone_and_its_vocabulary_travels_with_it(tiny_corpus, tmp_path):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    llm_before = {k: v.clone() for k, v in llm.state_dict().items()}
    settings = EncoderLLMSettings(corpus=str(tiny_corpus), max_batch_seconds=3.0, eval_utterances=6,
                                  adapter_tokens=True, llm_loss_weight=0.0, answer_lead='You said: "', answer_close='"')
    stage = EncoderLLMStage(settings, llm=llm)
    readout = stage.module.speech_input.adapter.readout
    spoken = {i for u in stage.train_set for i in llm.tokenizer.encode(u.text, add_special_tokens=False)}
    assert readout.token_ids.tolist() == sorted(spoken)
    assert torch.equal(readout.rows, llm.model.embed.weight[readout.token_ids].float())
    logits_before = readout.logits.weight.detach().clone()
    config = TrainConfig(out_dir=str(tmp_path), max_steps=2, eval_every=2, checkpoint_every=2, threads=2,
                         learning_rate=1e-3, warmup_steps=1, log_every=1)
    result = train(stage, config)
    assert set(result["eval"]) == {"wer_160ms", "cer_160ms", "token_ctc_wer_160ms"}
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert records and all(math.isfinite(r["token_ctc"]) and "token_accuracy" not in r for r in records)  # no LLM pass
    assert not torch.equal(readout.logits.weight, logits_before)
    for name, value in llm.state_dict().items():
        assert torch.equal(value, llm_before[name]), name

    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    assert sum(k.endswith("readout.logits.weight") for k in checkpoint) == 1  # one copy, under speech_input
    report = evaluate_asr(tiny_corpus / "dev.jsonl", load_recognizer(tmp_path / "last.pt", "tokens", llm))
    assert report["n"] == 6 and report["wer"] == pytest.approx(result["eval"]["token_ctc_wer_160ms"])

    # stage 3 rebuilds the same readout from the checkpoint alone
    same = encoder_qa.load_speech_input(encoder_qa.EncoderQASettings(speech_checkpoint=str(tmp_path / "last.pt")), llm)
    assert torch.equal(same.adapter.readout.token_ids, readout.token_ids)
    feats, lengths = torch.randn(1, 64, 80), torch.tensor([64])
    with torch.no_grad():
        assert torch.allclose(same.eval()(feats, lengths, 8, UNLIMITED)[0],
                              stage.module.speech_input.eval()(feats, lengths, 8, UNLIMITED)[0])


def test_targets_close_the_quote_and_hypotheses_end_there(tiny_corpus):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    settings = EncoderLLMSettings(corpus=str(tiny_corpus), answer_lead='You said: "', answer_close='"')
    module = EncoderLLMStage(settings, llm=llm).module
    lead = llm.tokenizer.encode('You said: "', add_special_tokens=False)
    assert module.form.suffix_ids.tolist()[-len(lead):] == lead
    ids = module.target_ids("hello there")
    assert ids[-1] == module.form.end_id and llm.tokenizer.decode(ids[:-1]) == 'hello there"'


def test_a_transcript_is_no_longer_than_its_speech_allows(tiny_corpus, monkeypatch):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    module = EncoderLLMStage(EncoderLLMSettings(corpus=str(tiny_corpus)), llm=llm).module.eval()
    written = []
    generate = llm.generate_from_embeds

    def counted(*args, **kwargs):
        tokens = list(generate(*args, **kwargs))
        written.append(len(tokens))
        return tokens

    monkeypatch.setattr(llm, "generate_from_embeds", counted)
    feats = torch.randn(1, 200, module.speech_input.encoder.config.n_mels)  # 2 s: 25 embeddings at 12.5 Hz
    with torch.no_grad():
        module.transcribe(feats, torch.tensor([200]), 16, UNLIMITED, max_tokens=80)
    n = module.speech_input(feats, torch.tensor([200]), 16, UNLIMITED)[1].item()
    assert written == [int(n * TRANSCRIPT_TOKENS_PER_EMBEDDING) + TRANSCRIPT_TOKENS_EXTRA]  # a random LLM never stops
