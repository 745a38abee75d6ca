"""Input stage 3 on a tiny corpus: trains adapter, prompt and state head; the LLM never changes."""

import json
import math
from dataclasses import replace

import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.llm import FrozenLLM
from freeze_omni.encoder import UNLIMITED
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm.state_head import DialogueState, StateHead, acoustic_context, chunk_means
from freeze_omni.safetensors_io import save_fp16
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages.encoder_ctc import chunk_frames_160ms
from freeze_omni.train.stages.encoder_qa import EncoderQASettings, EncoderQAStage, state_positions
from freeze_omni.train.sequences import IGNORE

pytestmark = pytest.mark.usefixtures("one_thread")

def test_state_labels_sit_on_the_last_position_of_each_chunk():
    assert state_positions(6, [0, IGNORE, 1]) == [IGNORE, 0, IGNORE, IGNORE, IGNORE, 1]
    with pytest.raises(ValueError):
        state_positions(5, [0, 1])


def test_stage_trains_speech_side_and_state_head_never_the_llm(tiny_corpus, tmp_path):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    llm_before = {k: v.clone() for k, v in llm.state_dict().items()}
    settings = EncoderQASettings(corpus=str(tiny_corpus), answers_dir=str(tmp_path / "answers"), max_answer_tokens=5,
                                 conversations_per_batch=2, eval_turns=2, ignore_share=0.5, embedding_ctc_weight=0.3)
    stage = EncoderQAStage(settings, llm=llm)
    head_before = stage.module.state_head.proj.weight.detach().clone()
    encoder_before = {k: v.clone() for k, v in stage.module.speech_input.encoder.state_dict().items()}
    batch = stage.load(stage.plan(0, 0)[0], torch.device("cpu"))
    n_turns = sum(len(c) for c in batch["conversations"])
    assert batch["feats"].shape[0] == n_turns
    # every turn's audio is whole 160 ms chunks, one label per chunk
    for length, item in zip(batch["lengths"].tolist(), [t for c in batch["conversations"] for t in c]):
        assert length == 16 * len(item.labels)
        assert item.labels[-1] in (int(DialogueState.ANSWER), int(DialogueState.IGNORE))
        assert (item.answer is None) == (item.labels[-1] == int(DialogueState.IGNORE)) == (item.transcript is None)

    config = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=3, eval_every=3, checkpoint_every=3, threads=1,
                         learning_rate=1e-2, warmup_steps=1, log_every=1)
    result = train(stage, config)
    assert result["finished"]
    assert set(result["eval"]) == {"end_delay_ms_p50", "early_answer_rate", "missed_request_rate",
                                   "false_answer_rate", "answer_token_accuracy"}
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["state_loss"]) and math.isfinite(r["answer_loss"]) for r in records if "loss" in r)
    assert any(math.isfinite(r.get("embedding_ctc", math.nan)) for r in records)
    assert not torch.equal(stage.module.state_head.proj.weight, head_before)
    for name, value in llm.state_dict().items():
        assert torch.equal(value, llm_before[name]), name
    for name, value in stage.module.speech_input.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[name]), name  # train_encoder = False
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    assert any(k.startswith("state_head.") for k in checkpoint) and not any(k.startswith("llm.") for k in checkpoint)
    # the frozen encoder is in it too: the checkpoint alone rebuilds the model
    assert {f"speech_input.encoder.{k}" for k in encoder_before} <= set(checkpoint)


def test_with_the_speech_side_kept_only_the_state_head_learns(tiny_corpus, tmp_path):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    settings = EncoderQASettings(corpus=str(tiny_corpus), answers_dir=str(tmp_path / "answers"), max_answer_tokens=5,
                                 conversations_per_batch=2, eval_turns=2, ignore_share=0.5, train_adapter=False,
                                 train_prompt=False, decide_after=0.08)
    stage = EncoderQAStage(settings, llm=llm)
    # decide_after = listen_margin: a turn's chunks listen, then decide, with no unlabelled gap
    # (the default 0.24 s always leaves one chunk between them unlabelled)
    for conversation in stage.load(stage.plan(0, 0)[0], torch.device("cpu"))["conversations"]:
        for item in conversation:
            assert IGNORE not in item.labels and item.labels[0] == DialogueState.LISTEN
    speech_before = {k: v.clone() for k, v in stage.module.speech_input.state_dict().items()}
    head_before = stage.module.state_head.proj.weight.detach().clone()
    config = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=2, eval_every=0, checkpoint_every=2, threads=1,
                         learning_rate=1e-2, warmup_steps=1, log_every=1)
    assert train(stage, config)["finished"]
    assert not torch.equal(stage.module.state_head.proj.weight, head_before)
    for name, value in stage.module.speech_input.state_dict().items():
        assert torch.equal(value, speech_before[name]), name


def test_an_acoustic_head_starts_from_a_saved_head_and_reads_what_the_engine_reads(tiny_corpus, tmp_path):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))
    plain = StateHead(llm.hidden_size)
    save_fp16(tmp_path / "state_head.safetensors", plain.state_dict())
    settings = EncoderQASettings(corpus=str(tiny_corpus), answers_dir=str(tmp_path / "answers"), max_answer_tokens=5,
                                 conversations_per_batch=2, eval_turns=2, ignore_share=0.5, train_adapter=False,
                                 train_prompt=False, state_acoustic_chunks=3,
                                 state_head_init=str(tmp_path / "state_head.safetensors"))
    stage = EncoderQAStage(settings, llm=llm)
    module, head = stage.module.eval(), stage.module.state_head
    torch.testing.assert_close(head.proj.weight, plain.proj.weight.half().float())
    assert not head.acoustic.weight.any()

    # the rows stage 3 computes offline are the rows the engine computes chunk by chunk
    chunk = chunk_frames_160ms(module.speech_input.encoder)
    feats = torch.randn(1, 16 * 7, module.speech_input.encoder.config.n_mels)
    with torch.no_grad():
        _, (offline,) = module.speech(feats, torch.tensor([feats.shape[1]]))
        cache, history, streamed = module.speech_input.initial_cache(chunk, UNLIMITED), head.initial_history(), []
        for piece in torch.split(feats, [16, 48, 16, 32], dim=1):
            _, frames, cache = module.speech_input.step(piece, cache)
            rows, history = acoustic_context(chunk_means(frames[0], chunk), history)
            streamed.append(rows)
    assert offline.shape == (7, 3 * module.speech_input.encoder.config.dim)
    torch.testing.assert_close(torch.cat(streamed), offline, atol=1e-4, rtol=0)

    config = TrainConfig(out_dir=str(tmp_path / "run"), max_steps=2, eval_every=2, checkpoint_every=2, threads=1,
                         learning_rate=1e-2, warmup_steps=1, log_every=1)
    assert train(stage, config)["finished"]
    assert head.acoustic.weight.any()

    save_fp16(tmp_path / "other.safetensors", {"proj.weight": torch.zeros(3, 5)})
    with pytest.raises(FreezeOmniError, match="not a state head for this LLM"):
        EncoderQAStage(replace(settings, state_head_init=str(tmp_path / "other.safetensors")), llm=llm)
