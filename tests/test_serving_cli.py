"""`freeze-omni serve` and `bench serve` end to end on a tiny model bundle whose state head was fitted here to
answer once the user has stopped (so long questions are answered once, with no barge-in), and
answers sampled with each user's own seed (a random tiny LLM barely listens to its input, so
the seed is what makes the users' answers differ and the cross-talk check meaningful)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

from conftest import CHATML, CORPUS
from dialogue_support import force
from freeze_omni.audio.vad import SpeechDetector
from freeze_omni.bundle import load_model, save_model
from freeze_omni.cli import main
from freeze_omni.client import DialogueClient
from freeze_omni.dialogue import SpeechEnded, SpeechStarted, TurnEngine
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.llm.state_head import DialogueState, StateHead
from freeze_omni.serving.loadtest import QUESTIONS, agrees, first_answer, levels, spoken_questions
from freeze_omni.speech_input import SpeechInput

pytestmark = pytest.mark.usefixtures("one_thread")


def fit_head(model_dir, questions: list[np.ndarray]) -> StateHead:
    """A linear state head fitted on this model's own hidden states: LISTEN while the VAD hears the
    user, ANSWER on the chunks after the VAD end."""
    model = load_model(model_dir)
    head = StateHead(model.llm.hidden_size)
    force(head, DialogueState.LISTEN)  # hear every question to its end, and the silence after it
    hidden, labels, ended = [], [], False
    decide = head.decide
    head.decide = lambda h, *threshold: (hidden.append(h[0].detach().float().clone()), decide(h, *threshold))[1]
    engine = TurnEngine(model.speech_input, model.llm, head, SpeechDetector())
    session = engine.new_session("fit")
    audio = np.concatenate([np.concatenate([q, np.zeros(32000, np.float32)]) for q in questions])
    for start in range(0, audio.size - CHUNK_SAMPLES + 1, CHUNK_SAMPLES):
        for event in engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES]):
            ended = isinstance(event, SpeechEnded) or (ended and not isinstance(event, SpeechStarted))
        labels += [int(DialogueState.ANSWER if ended else DialogueState.LISTEN)] * (len(hidden) - len(labels))
    x, y = torch.stack(hidden), torch.tensor(labels)
    mean, std = x.mean(0), x.std(0).clamp(min=0.05)  # folded into fp16 weights: no huge scales
    fitted = torch.nn.Linear(x.shape[1], 3)
    optimiser = torch.optim.Adam(fitted.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(fitted((x - mean) / std), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        head.proj.weight.copy_(fitted.weight / std)
        head.proj.bias.copy_(fitted.bias - (fitted.weight / std) @ mean)
    return head


def ascii_qwen2():
    """A random tiny Qwen2 whose every token is printable ASCII (or newline), so its answers are
    readable strings that differ from seed to seed (a byte-level vocabulary answers in U+FFFD)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    ascii_chars = [chr(b) for b in range(33, 127)] + ["\u0120", "\u010a"]  # byte-level names of space, newline
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=ascii_chars, limit_alphabet=len(ascii_chars))
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    model, tokenizer = ascii_qwen2()
    model.save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    torch.manual_seed(1)
    encoder = SpeechEncoder(EncoderConfig("conv2d", n_mels=80, dim=32, heads=2, layers=1, ffn_dim=64, conv_channels=8))
    speech_input = SpeechInput(encoder, model.config.hidden_size).eval()
    save_model(folder, speech_input, StateHead(model.config.hidden_size), llm_source=str(folder / "llm"))
    save_model(folder, speech_input, fit_head(folder, spoken_questions(QUESTIONS[:2])), llm_source=str(folder / "llm"))
    return folder


def test_bench_serve_reports_the_keys_and_every_user_gets_its_own_answer(tiny_bundle, capsys):
    code = main(["bench", "serve", "--model", str(tiny_bundle), "--users", "3", "--replicas", "2", "--no-sweep",
                 "--temperature", "1.0", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("users", "replicas", "chunk_latency_ms", "first_packet_ms", "cross_talk", "answered",
                "max_realtime_users"):
        assert key in result
    assert (result["users"], result["replicas"], result["cross_talk"], result["answered"]) == (3, 2, 0, 3)
    assert result["expected_answers"] == 3
    assert result["chunk_latency_ms"]["p95"] > 0 and result["first_packet_ms"]["p50"] > 0
    assert result["max_realtime_users"] in (0, 3) and result["levels"][0]["errors"] == {}
    assert result["draft_threshold"] == 0.0  # the engine's default


def test_the_single_user_level_asks_every_question_alone(tiny_bundle, capsys):
    code = main(["bench", "serve", "--model", str(tiny_bundle), "--users", "2", "--replicas", "1", "--tail", "2",
                 "--draft-threshold", "2", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["draft_threshold"] == 2.0  # drafts off, as asked
    alone, together = result["levels"]
    assert (alone["users"], alone["expected_answers"], alone["answered"]) == (1, 2, 2)
    assert (together["users"], together["expected_answers"], together["answered"]) == (2, 2, 2)
    assert alone["first_packet_ms"]["p95"] > alone["first_packet_ms"]["p50"]  # two answers, not one
    assert "chunk_samples_ms" not in alone
    assert result["first_packet_vs_single_user"] == pytest.approx(
        together["first_packet_ms"]["p50"] / alone["first_packet_ms"]["p50"])


def test_answers_agree_only_with_their_own_reference():
    answered = [{"type": "answer_started"}, {"type": "answer_text", "text": "Paris is"},
                {"type": "interrupted"}, {"type": "answer_started"}, {"type": "answer_text", "text": "no"}]
    assert first_answer(answered) == "Paris is"
    assert agrees("Paris is", "Paris is the capital.") and agrees("Paris is the capital.", "Paris is")
    assert not agrees("Madrid", "Paris is") and not agrees("", "Paris is")
    assert levels(5) == [1, 2, 4, 5] and levels(1) == [1]


def test_the_spoken_questions_sit_in_a_faint_floor_never_digital_zeros():
    (clip,) = spoken_questions(QUESTIONS[:1], lead_s=0.5, quiet_s=2.0)
    assert clip.size % CHUNK_SAMPLES == 0 and np.all(clip != 0.0)
    lead, tail = clip[:7200], clip[-28800:]  # 0.45 s of the lead, the last 1.8 s of the quiet
    for quiet in (lead, tail):
        assert 0 < np.sqrt(np.mean(quiet ** 2)) < 0.01
    assert np.abs(clip).max() > 0.1  # and the question between them


def test_serve_refuses_a_public_address_without_a_token(capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


def test_serve_runs_the_bundle_on_loopback_until_interrupted(tiny_bundle):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "freeze_omni", "serve", "--model", str(tiny_bundle), "--port",
                               str(port), "--max-users", "3", "--token", "t0k"], stderr=subprocess.PIPE, text=True)
    try:
        health = None
        for _ in range(300):
            try:
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read())
                break
            except OSError:
                time.sleep(0.1)
        assert health == {"status": "ok", "users": 0, "max_users": 3, "replicas": 1}

        async def talk():
            async with await DialogueClient.connect(f"ws://127.0.0.1:{port}/ws", token="t0k") as client:
                return client.ready

        assert asyncio.run(talk())["type"] == "ready"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0 and f"http://127.0.0.1:{port}/?token=t0k" in err
