"""Input stage 2a (copy-prompt) on a tiny random LLM: only the prompt learns, and stage 2 takes it
only when it was trained for the same form."""

import json
import random

import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.data.plan import text_split
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train
from freeze_omni.train.stages.copy_prompt import CopyPromptSettings, CopyPromptStage, misheard
from freeze_omni.train.stages.encoder_llm import EncoderLLMSettings, build_model

FORM = {"instruction": "Repeat the user's message exactly.", "answer_lead": 'You said: "', "answer_close": '"'}


@pytest.fixture(scope="module")
def llm() -> FrozenLLM:
    return FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))


@pytest.fixture(scope="module")
def trained(llm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy-prompt")
    texts = folder / "texts.txt"
    words = ["red", "green", "blue", "small", "large", "old", "new", "quiet", "loud", "warm", "cold", "bright",
             "dark", "soft", "hard", "slow", "fast", "tall", "short", "round"]
    texts.write_text("\n".join(f"the {a} {b} house is here" for a in words for b in words if a != b))
    settings = CopyPromptSettings(texts_file=str(texts), batch_texts=4, eval_texts=3, blank_frames=2,
                                  learn_blank=True, **FORM)
    stage = CopyPromptStage(settings, llm=llm)
    llm_before = {k: v.clone() for k, v in llm.state_dict().items()}
    prompt_before = stage.module.prompt.detach().clone()
    config = TrainConfig(out_dir=str(folder / "run"), max_steps=3, eval_every=3, checkpoint_every=3, threads=2,
                         learning_rate=1e-2, warmup_steps=1, log_every=1, stage=vars(settings))
    result = train(stage, config)
    return stage, llm_before, prompt_before, result, folder / "run"


def test_only_the_prompt_learns_and_held_out_copies_are_scored(llm, trained):
    stage, llm_before, prompt_before, result, run = trained
    assert result["finished"] and set(result["eval"]) == {"exact", "wer"}
    assert 0.0 <= result["eval"]["exact"] <= 1.0
    assert not torch.equal(stage.module.prompt, prompt_before) and stage.module.blank.abs().sum() > 0
    for name, value in llm.state_dict().items():
        assert torch.equal(value, llm_before[name]), name
    assert sorted(torch.load(run / "last.pt", weights_only=False)["model"]) == ["blank", "prompt"]
    assert all(text_split(t) == "dev" for t in stage.dev_texts)
    assert not set(stage.dev_texts) & set(stage.train_texts)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all("token_accuracy" in r for r in records if "loss" in r)


def test_copied_spans_hold_the_drawn_blanks_around_each_token(trained):
    stage = trained[0]
    module, ids = stage.module, torch.tensor([5, 6, 7])
    heard = module.heard(ids, torch.tensor([1, 0, 2, 1, 3]))
    tokens, blank = module.llm.embed(ids[None])[0].float(), module.blank
    assert heard.shape == (10, module.prompt.shape[1])
    assert torch.equal(heard[[1, 2, 5]], tokens)
    assert all(torch.equal(heard[i], blank) for i in (0, 3, 4, 6, 7, 8, 9))
    gaps = [stage.load([0, 1, 2, 3], torch.device("cpu"))["gaps"] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*gaps))  # a batch is heard the same way when replayed
    assert all(g[:-1].max() <= 2 and 2 <= g[-1] <= 4 for g in gaps[0])  # blank_frames = 2
    assert torch.equal(stage.dev_gaps("the red house", 0), stage.dev_gaps("the red house", 0))


def test_misheard_texts_change_about_the_asked_share_of_words():
    words = ["alpha", "beta", "gamma"]
    text = " ".join(f"w{i}" for i in range(2000))
    assert misheard(text, words, 0.0, random.Random(0)) == text
    changed = misheard(text, words, 0.2, random.Random(0)).split()
    kept = sum(w.startswith("w") for w in changed)
    # 10% swapped and 5% dropped leave 85% of the words; swaps and 5% insertions add 15% new ones
    assert 0.82 < kept / 2000 < 0.88 and 0.12 < (len(changed) - kept) / 2000 < 0.18
    assert set(changed) - set(text.split()) <= set(words)
    assert misheard("one", words, 1.0, random.Random(3))  # never empty


def test_stage_2_starts_from_the_prompt_only_for_the_same_form(llm, trained, tiny_corpus):
    stage, *_, run = trained
    settings = EncoderLLMSettings(corpus=str(tiny_corpus), prompt_init=str(run / "last.pt"), **FORM)
    assert torch.equal(build_model(settings, llm).speech_input.prompt, stage.module.prompt)
    readout = build_model(EncoderLLMSettings(corpus=str(tiny_corpus), prompt_init=str(run / "last.pt"),
                                             adapter_tokens=True, **FORM), llm).speech_input.adapter.readout
    assert torch.equal(readout.blank, stage.module.blank)  # the token readout's blank is the learnt one
    for wrong in ({**FORM, "answer_lead": "You asked: "}, {**FORM, "instruction": "Answer."}):
        with pytest.raises(FreezeOmniError, match="was trained for"):
            build_model(EncoderLLMSettings(corpus=str(tiny_corpus), prompt_init=str(run / "last.pt"), **wrong), llm)
    with pytest.raises(FreezeOmniError, match="prompt_length"):
        build_model(EncoderLLMSettings(corpus=str(tiny_corpus), prompt_init=str(run / "last.pt"), prompt_length=2,
                                       **FORM), llm)
    with pytest.raises(FreezeOmniError, match="no such copy-prompt checkpoint"):
        build_model(EncoderLLMSettings(corpus=str(tiny_corpus), prompt_init=str(run / "missing.pt"), **FORM), llm)
