"""`freeze-omni chat` on a model folder written by `bundle.save_model` (tiny random parts)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from dialogue_support import (ANSWER, IGNORE, AnswerAfterSpeech, conversation, forced_head, printable_llm, saved_llm,
                              silence)
from freeze_omni.audio.io import read_audio, write_wav
from freeze_omni.audio.quiet import QUIET_DBFS
from freeze_omni.audio.vad import SpeechDetector
from freeze_omni.bundle import has_speech_out, load_model, load_speaker, missing_parts, save_model
from freeze_omni.cli import main
from freeze_omni.dialogue import TurnEngine
from freeze_omni.encoder import UNLIMITED
from freeze_omni.dialogue.replay import replay
from freeze_omni.codec.model import Codec
from freeze_omni.errors import FreezeOmniError, ModelNotFoundError
from freeze_omni.dialogue.speaker import TextOnlySpeaker
from freeze_omni.llm.int8 import Int8Linear
from freeze_omni.llm.state_head import StateHead
from freeze_omni.paths import DEFAULT_MODEL_DIR, PACKAGE_DIR
from freeze_omni.speech_input import SpeechInput

EXAMPLE = PACKAGE_DIR / "examples" / "question.wav"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bundle_round_trip_keeps_every_weight(tmp_path, speech_input, llm):
    head = forced_head(llm, ANSWER)
    save_model(tmp_path, speech_input, head, llm_source="unused")
    assert missing_parts(tmp_path) == []
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in tmp_path.glob("*.safetensors"))  # shareable
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_model(tmp_path, llm=llm)
    for name, value in speech_input.state_dict().items():
        torch.testing.assert_close(loaded.speech_input.state_dict()[name], value.half().float())
    torch.testing.assert_close(loaded.state_head.proj.bias, head.proj.bias)
    assert isinstance(loaded.speaker, TextOnlySpeaker)  # no decoder in this bundle: text answers
    (tmp_path / "decoder.safetensors").write_bytes(b"")  # half of speech out is not speech out
    assert isinstance(load_model(tmp_path, llm=llm).speaker, TextOnlySpeaker)
    (tmp_path / "state_head.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="state_head"):
        load_model(tmp_path, llm=llm)


def test_bundle_keeps_an_acoustic_state_head(tmp_path, speech_input, llm):
    head = StateHead(llm.hidden_size, speech_input.encoder.config.dim, 3)
    with torch.no_grad():
        head.acoustic.weight.normal_()
    save_model(tmp_path, speech_input, head)
    loaded = load_model(tmp_path, llm=llm)
    assert loaded.spec.state_acoustic_chunks == 3 and loaded.state_head.acoustic_chunks == 3
    torch.testing.assert_close(loaded.state_head.acoustic.weight, head.acoustic.weight.half().float())


def test_bundle_keeps_the_adapter_output_norm(tmp_path, speech_input, llm):
    normed = SpeechInput(speech_input.encoder, llm.hidden_size, speech_input.prompt.shape[0], adapter_norm=True)
    normed.adapter.match_embedding_scale(llm.model.embed.weight)
    save_model(tmp_path, normed, forced_head(llm, ANSWER))
    loaded = load_model(tmp_path, llm=llm)
    assert loaded.spec.adapter_norm and loaded.speech_input.adapter.norm is not None
    torch.testing.assert_close(loaded.speech_input.adapter.norm.weight, normed.adapter.norm.weight.half().float())


def test_bundle_keeps_a_token_readout_and_reattaches_the_llm(tmp_path, speech_input, llm):
    tokens = SpeechInput(speech_input.encoder, llm.hidden_size, speech_input.prompt.shape[0], vocabulary=6)
    tokens.adapter.readout.set_vocabulary([2, 3, 5, 7, 11, 13])
    tokens.attach_llm(llm.model.embed.weight)
    save_model(tmp_path, tokens, forced_head(llm, ANSWER))
    loaded = load_model(tmp_path, llm=llm)
    readout = loaded.speech_input.adapter.readout
    assert loaded.spec.adapter_vocabulary == 6 and readout.token_ids.tolist() == [2, 3, 5, 7, 11, 13]
    assert torch.equal(readout.rows, llm.model.embed.weight[readout.token_ids].float())
    feats, lengths = torch.randn(1, 32, 80), torch.tensor([32])
    with torch.no_grad():
        torch.testing.assert_close(loaded.speech_input(feats, lengths, 8, UNLIMITED)[0],
                                   tokens.eval().half().float()(feats, lengths, 8, UNLIMITED)[0])


def test_bundle_loads_its_llm_with_int8_weights_when_it_says_so(tmp_path, monkeypatch, speech_input):
    monkeypatch.setenv("FREEZE_OMNI_CACHE", str(tmp_path / "cache"))
    llm = saved_llm(tmp_path, "llama")
    model_dir = tmp_path / "model"
    save_model(model_dir, SpeechInput(speech_input.encoder, llm.hidden_size), forced_head(llm, ANSWER),
               llm_source=str(tmp_path / "llm"), llm_weights="int8")
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["llm_weights"] == "int8"
    (model_dir / "model.json").write_text(json.dumps({**spec, "llm_dtype": "float32"}))
    assert isinstance(load_model(model_dir, speech=False).llm.model.lm_head, Int8Linear)
    (model_dir / "model.json").write_text(json.dumps({**spec, "llm_weights": "int4"}))
    with pytest.raises(FreezeOmniError, match="llm_weights"):
        load_model(model_dir, speech=False)


@pytest.mark.parametrize("state, turns", [(ANSWER, 1), (IGNORE, 0)])
def test_replay_answers_a_request_and_ignores_what_is_not_for_it(speech_input, speech, state, turns):
    llm = printable_llm(stop_wins=False)
    head = forced_head(llm, state)
    policy = AnswerAfterSpeech(head) if state == ANSWER else (lambda events: None)
    engine = TurnEngine(speech_input, llm, head, SpeechDetector())
    records = replay(engine, conversation(silence(0.5), speech["q1"], silence(1.0)), on_event=lambda e: policy([e]))
    assert len(records) == turns
    for record in records:
        assert record.answer and not record.interrupted
        assert record.state_events[-1]["state"] == "answer"
        assert record.latency_ms["state_decision"] <= record.latency_ms["first_text"]


def test_replay_pads_the_recording_with_a_noise_floor_never_digital_zeros(speech_input, speech):
    llm = printable_llm(stop_wins=False)
    engine = TurnEngine(speech_input, llm, forced_head(llm, IGNORE), SpeechDetector())
    heard = []
    accept = engine.accept_audio
    engine.accept_audio = lambda session, packet: heard.append(packet.copy()) or accept(session, packet)
    audio = speech["q1"]
    replay(engine, audio, packet_samples=512)
    fed = np.concatenate(heard)
    np.testing.assert_array_equal(fed[:audio.size], audio)
    tail = fed[audio.size:]
    assert tail.size >= 16000  # at least a second of quiet after the recording
    assert np.count_nonzero(tail == 0) == 0
    assert abs(10 * np.log10(np.mean(np.square(tail, dtype=np.float64))) - QUIET_DBFS) < 0.5


def _chat_on_a_saved_model(tmp_path, monkeypatch, speech_input, speech, options=()) -> None:
    monkeypatch.setenv("FREEZE_OMNI_CACHE", str(tmp_path / "cache"))
    llm = saved_llm(tmp_path)
    save_model(tmp_path / "model", speech_input, forced_head(llm, ANSWER), llm_source=str(tmp_path / "llm"))
    spec = json.loads((tmp_path / "model" / "model.json").read_text())
    (tmp_path / "model" / "model.json").write_text(json.dumps({**spec, "llm_dtype": "float32"}))
    write_wav(tmp_path / "q.wav", conversation(silence(0.5), speech["q1"], silence(0.5)))
    assert main(["chat", str(tmp_path / "q.wav"), "--model", str(tmp_path / "model"), "--json", *options]) == 0


@pytest.mark.parametrize("packet_ms", [None, 32])
def test_chat_cli_prints_the_documented_json_for_a_saved_model(tmp_path, monkeypatch, capsys, speech_input, speech,
                                                               packet_ms):
    from freeze_omni.dialogue import replay as replay_module

    packets = []

    def spy(*args, packet_samples, **kwargs):
        packets.append(packet_samples)
        return replay(*args, packet_samples=packet_samples, **kwargs)

    monkeypatch.setattr(replay_module, "replay", spy)
    _chat_on_a_saved_model(tmp_path, monkeypatch, speech_input, speech,
                           [] if packet_ms is None else ["--packet-ms", str(packet_ms)])
    assert packets == [512 if packet_ms else 2560]
    report = json.loads(capsys.readouterr().out)
    assert report["turns"]  # the forced head accepts the speech (more than once, as it keeps talking)
    turn = report["turns"][0]
    assert set(turn) == {"request", "answer", "interrupted", "state_events", "latency_ms", "answer_wav"}
    assert turn["answer_wav"] is None  # text-only answers until the speech decoder exists
    assert turn["state_events"][-1]["state"] == "answer" and isinstance(turn["answer"], str)


@pytest.mark.slow
def test_the_shipped_model_answers_the_bundled_question(tmp_path):
    """`make demo`: the default bundle hears the example question, decides the turn is over and answers."""
    out = tmp_path / "answer.wav"
    result = subprocess.run([sys.executable, "-m", "freeze_omni", "chat", str(EXAMPLE), "-o", str(out), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (turn,) = json.loads(result.stdout)["turns"]
    assert turn["answer"].strip() and turn["state_events"][-1]["state"] == "answer"
    if has_speech_out(DEFAULT_MODEL_DIR):
        audio = read_audio(out)
        assert turn["answer_wav"] == str(out) and audio.size > 16000 * 0.5


def test_speech_out_must_fit_the_llm_and_the_codec(tmp_path):
    """A decoder speaks one codec and reads one LLM width; a mismatched bundle is refused at load."""
    shutil.copy(DEFAULT_MODEL_DIR / "decoder.safetensors", tmp_path)
    shutil.copy(DEFAULT_MODEL_DIR / "codec.safetensors", tmp_path)
    assert not isinstance(load_speaker(tmp_path, 576), TextOnlySpeaker)
    with pytest.raises(FreezeOmniError, match="576"):
        load_speaker(tmp_path, 32)
    codec = Codec.load(tmp_path / "codec.safetensors")
    Codec(codec.codebook.flip(0), codec.config, codec.log_scales).save(tmp_path / "codec.safetensors")
    with pytest.raises(FreezeOmniError, match="another codec"):
        load_speaker(tmp_path, 576)
