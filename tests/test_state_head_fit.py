"""The state head fitted on what the turn engine hears: labels, the fit, and the replays."""

import json
from dataclasses import replace

import pytest
import torch

import numpy as np

from dialogue_support import ANSWER, LISTEN, RecordingSpeaker, forced_head, make_engine, saved_llm
from freeze_omni.audio.io import write_wav
from freeze_omni.bundle import load_model, read_spec, save_model, write_spec
from freeze_omni.cli import main
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.eval.duplex import BARGE_IN_GAP_SECONDS, build_cases
from freeze_omni.llm.state_head import DialogueState
from freeze_omni.train import state_head_fit
from freeze_omni.train.sequences import IGNORE
from freeze_omni.train.state_head_fit import (HORIZON_MS, fit_state_head, hear_cases, replay_label,
                                              talk_over_cases)
from freeze_omni.train.turns import CHUNK_SECONDS, TurnSettings, Utterance, chunk_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chunks_are_labelled_as_stage_3_labels_turns():
    settings = TurnSettings(listen_margin=0.08, decide_after=0.24)
    assert replay_label(-500.0, True, settings) == replay_label(79.0, False, settings) == DialogueState.LISTEN
    assert replay_label(80.0, True, settings) == replay_label(239.0, True, settings) == IGNORE  # the gap
    assert replay_label(240.0, True, settings) == DialogueState.ANSWER
    assert replay_label(240.0, False, settings) == DialogueState.IGNORE
    assert replay_label(HORIZON_MS, True, settings) == IGNORE
    for end in (0.08, 0.5, 1.0, 1.37):  # every chunk of a stage-3 turn, as a replay would see it
        for request, label in ((True, DialogueState.ANSWER), (False, DialogueState.IGNORE)):
            stage_3 = chunk_labels(end, label, 2, settings)
            replayed = [replay_label(((k + 1) * CHUNK_SECONDS - end) * 1000, request, settings) for k in range(len(stage_3))]
            assert replayed == stage_3


def test_the_fit_separates_states_and_folds_the_standardisation_into_the_head():
    """Hidden states tell listening from deciding, only the acoustic rows tell answer from ignore;
    both are far from zero mean and unit scale, which the folded head must undo."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=g)
    hidden = torch.randn(600, 8, generator=g) * 5 + 40
    hidden[:, 0] += (labels > 0) * 20.0
    acoustic = torch.randn(600, 6, generator=g) * 0.01 - 3
    acoustic[:, 1] += (labels == 2) * 0.1
    head = fit_state_head(hidden, acoustic, labels, acoustic_chunks=3)
    assert head.acoustic_chunks == 3 and head.acoustic_size == 2
    with torch.no_grad():
        accuracy = (head(hidden, acoustic).argmax(-1) == labels).float().mean()
    assert accuracy > 0.95
    with pytest.raises(ValueError, match="only"):
        fit_state_head(hidden, acoustic, labels.clamp(max=1), acoustic_chunks=3)


@pytest.mark.parametrize("acoustic_chunks", [0, 3])
def test_replays_record_one_row_per_decision_labelled_at_fit_time(llm, speech_input, detector, speech, tmp_path,
                                                             acoustic_chunks):
    items = []
    for i, (name, kind) in enumerate([("q1", "question"), ("q2", "question"), ("q1", "filler")]):
        write_wav(tmp_path / f"{i}.wav", speech[name])
        items.append(Utterance(str(tmp_path / f"{i}.wav"), name, kind, 0.05, speech[name].size / 16000 - 0.05))
    cases = build_cases(items, n=1, seed=0)
    engine = make_engine(llm, speech_input, detector, forced_head(llm, LISTEN))
    heard = hear_cases(engine, cases, acoustic_chunks, log=lambda _: None)
    n = heard.after_ms.numel()
    assert heard.hidden.shape == (n, llm.hidden_size) and heard.request.shape == (n,)
    assert heard.acoustic.shape == (n, acoustic_chunks * speech_input.encoder.config.dim)
    late, early = heard.labels(TurnSettings(decide_after=0.24)), heard.labels(TurnSettings(decide_after=0.08))
    assert {int(DialogueState.LISTEN), int(DialogueState.ANSWER)} <= set(late.tolist())
    # an earlier decision turns the no-loss gap after a sound into decisions, and nothing else
    changed = late != early
    assert changed.any() and (late[changed] == IGNORE).all() and (early[changed] != DialogueState.LISTEN).all()


def talk_over_items(speech, tmp_path) -> list[Utterance]:
    items = []
    for i, (name, kind) in enumerate([("q1", "question"), ("q2", "question"), ("q1", "statement"),
                                      ("q2", "question"), ("q1", "filler")]):
        write_wav(tmp_path / f"{i}.wav", speech[name])
        items.append(Utterance(str(tmp_path / f"{i}.wav"), name, kind, 0.05, speech[name].size / 16000 - 0.05))
    return items


def test_talk_over_cases_put_another_request_and_its_answer_time_before_each_case(speech, tmp_path):
    cases = build_cases(talk_over_items(speech, tmp_path), n=3, seed=0)
    talk_overs = talk_over_cases(cases)
    singles = [c for c in cases if c.kind != "barge-in"]
    requests = [c for c in cases if c.kind == "request"]
    assert [c.kind for c in talk_overs] == [c.kind for c in singles]
    for i, (talk_over, single) in enumerate(zip(talk_overs, singles)):
        first = requests[(i + 1) % len(requests)]
        lead = talk_over.audio.size - single.audio.size
        assert lead % CHUNK_SAMPLES == 0 and lead / 16 >= first.mark_ms + 1000 * BARGE_IN_GAP_SECONDS
        assert np.array_equal(talk_over.audio[:lead], first.audio[:lead])
        assert np.array_equal(talk_over.audio[lead:], single.audio)
        assert talk_over.mark_ms == lead / 16 + single.mark_ms
        assert first is not single


def test_talk_overs_are_heard_only_after_the_bundle_head_has_answered(llm, speech_input, detector, speech, tmp_path):
    talk_overs = talk_over_cases(build_cases(talk_over_items(speech, tmp_path), n=3, seed=0))
    never = make_engine(llm, speech_input, detector, forced_head(llm, LISTEN), RecordingSpeaker(audio=True))
    with pytest.raises(ValueError, match="nothing to fit"):
        hear_cases(never, talk_overs, 0, log=lambda _: None, talk_overs=True)
    always = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True),
                         max_answer_tokens=30)
    heard = hear_cases(always, talk_overs, 2, log=lambda _: None, talk_overs=True)
    assert set(heard.labels(TurnSettings()).tolist()) >= {int(DialogueState.LISTEN), int(DialogueState.ANSWER),
                                                          int(DialogueState.IGNORE)}
    assert heard.acoustic.shape == (heard.after_ms.numel(), 2 * speech_input.encoder.config.dim)
    singles = hear_cases(always, talk_overs, 2, log=lambda _: None)
    assert heard.after_ms.numel() < singles.after_ms.numel()  # the first request's chunks are not heard


def test_train_state_head_writes_a_copy_of_the_bundle_with_the_refitted_head(tmp_path, monkeypatch, capsys,
                                                                            speech_input, speech):
    monkeypatch.setenv("FREEZE_OMNI_CACHE", str(tmp_path / "cache"))
    llm = saved_llm(tmp_path)
    source = tmp_path / "model"
    save_model(source, speech_input, forced_head(llm, LISTEN), llm_source=str(tmp_path / "llm"), answer_threshold=0.9)
    write_spec(source, replace(read_spec(source), llm_dtype="float32"))
    lines = []
    for i, (name, kind) in enumerate([("q1", "question"), ("q2", "question"), ("q1", "statement"),
                                      ("q2", "question"), ("q1", "filler")]):
        write_wav(tmp_path / f"{i}.wav", speech[name])
        lines.append(json.dumps({"audio": f"{i}.wav", "text": name, "kind": kind, "speech_start": 0.05,
                                 "speech_end": speech[name].size / 16000 - 0.05}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    args = ["train", "state-head", "--model", str(source), "--manifest", str(tmp_path / "m.jsonl"), "--requests", "3"]
    args += ["--acoustic-chunks", "2", "--replays", str(tmp_path / "heard.pt")]
    assert main(args + ["--out", str(tmp_path / "refit")]) == 0
    refit = load_model(tmp_path / "refit")
    assert refit.spec.state_acoustic_chunks == 2 and refit.spec.answer_threshold == 0.0
    assert refit.state_head.acoustic.weight.any()
    assert not torch.equal(refit.state_head.proj.weight, load_model(source).state_head.proj.weight)

    def no_replays(*_, **__):
        raise AssertionError("the kept replays should have been used")

    monkeypatch.setattr(state_head_fit, "hear_cases", no_replays)
    assert main(args + ["--out", str(tmp_path / "again"), "--answer-threshold", "0.8"]) == 0  # the same fit
    again = load_model(tmp_path / "again")
    assert torch.equal(again.state_head.proj.weight, refit.state_head.proj.weight) and again.spec.answer_threshold == 0.8
    assert main(args + ["--out", str(tmp_path / "early"), "--decide-after", "0.08"]) == 0  # relabelled, not heard
    assert not torch.equal(load_model(tmp_path / "early").state_head.proj.weight, refit.state_head.proj.weight)
    with pytest.raises(AssertionError, match="kept replays"):  # other turns: heard again
        main(args + ["--out", str(tmp_path / "other"), "--seed", "1"])
    capsys.readouterr()
    assert main(args + ["--out", str(source)]) != 0
    assert "another folder" in capsys.readouterr().err
