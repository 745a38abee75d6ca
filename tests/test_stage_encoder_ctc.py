import json
import math

import pytest
import torch

from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages.encoder_ctc import EncoderCTCSettings, EncoderCTCStage


@pytest.mark.parametrize("init", ["whisper-tiny.en", "scratch"])
def test_stage_trains_evaluates_and_resumes(tiny_corpus, tmp_path, init):
    settings = EncoderCTCSettings(corpus=str(tiny_corpus), init=init, max_batch_seconds=3.0, eval_utterances=3)
    config = TrainConfig(out_dir=str(tmp_path), max_steps=2, eval_every=2, checkpoint_every=1, threads=2,
                         learning_rate=1e-4, warmup_steps=1)
    stage = EncoderCTCStage(settings)
    result = train(stage, config)
    assert result["finished"] and set(result["eval"]) == {"wer_160ms", "cer_160ms", "wer_full"}
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses and all(math.isfinite(v) for v in losses)
    # Every planned batch respects the audio budget and carries a valid chunk setting.
    for indices, chunk, left, _ in stage.plan(0, 0):
        assert max(stage.train_set[i].seconds for i in indices) * len(indices) <= 3.0 or len(indices) == 1
        assert 0 <= chunk <= settings.max_chunk and left >= -1
    resumed = train(EncoderCTCStage(settings), TrainConfig(**{**config.__dict__, "max_steps": 3}))
    assert resumed["step"] == 3
    if init == "scratch":  # CMVN statistics come from the corpus, not the defaults
        assert not torch.equal(stage.module.encoder.front.cmvn_mean, torch.zeros(80))


def test_eval_asr_reproduces_the_stage_figure_from_the_checkpoint(tiny_corpus, tmp_path):
    from freeze_omni.cli import main
    from freeze_omni.eval.asr import evaluate_asr, load_recognizer

    settings = EncoderCTCSettings(corpus=str(tiny_corpus), max_batch_seconds=3.0, eval_utterances=6)
    config = TrainConfig(out_dir=str(tmp_path), max_steps=1, eval_every=1, threads=2, warmup_steps=1)
    result = train(EncoderCTCStage(settings), config)
    report = evaluate_asr(tiny_corpus / "dev.jsonl", load_recognizer(tmp_path / "last.pt", "ctc"))
    assert report["mode"] == "ctc" and report["chunked"] and report["n"] == 6 and report["rtf"] > 0
    assert report["wer"] == pytest.approx(result["eval"]["wer_160ms"])
    assert main(["eval", "asr", "--manifest", str(tiny_corpus / "dev.jsonl"), "--checkpoint",
                 str(tmp_path / "last.pt"), "--mode", "llm"]) == 1
