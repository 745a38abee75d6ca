import json
import math

import torch

from conftest import tiny_hf_model
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages.encoder_llm import EncoderLLMSettings, EncoderLLMStage


def test_stage_trains_the_speech_side_and_never_the_llm(tiny_corpus, tmp_path):
    hf_model, tokenizer = tiny_hf_model("qwen2")
    llm = FrozenLLM.from_hf_model(hf_model, tokenizer)
    llm_before = {k: v.clone() for k, v in llm.state_dict().items()}
    settings = EncoderLLMSettings(corpus=str(tiny_corpus), max_batch_seconds=3.0, eval_utterances=2,
                                  embedding_ctc_weight=0.5)
    stage = EncoderLLMStage(settings, llm=llm)
    prompt_before = stage.module.speech_input.prompt.detach().clone()
    config = TrainConfig(out_dir=str(tmp_path), max_steps=3, eval_every=3, checkpoint_every=3, threads=2,
                         learning_rate=1e-3, warmup_steps=1, log_every=1)
    result = train(stage, config)
    assert result["finished"] and set(result["eval"]) == {"wer_160ms", "cer_160ms"}
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["embedding_ctc"]) for r in records if "loss" in r)
    assert not torch.equal(stage.module.speech_input.prompt, prompt_before)
    for name, value in llm.state_dict().items():
        assert torch.equal(value, llm_before[name]), name
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=False)
    assert not any(k.startswith("llm.") for k in checkpoint["model"])
    assert any(k.startswith("speech_input.adapter.") for k in checkpoint["model"])
