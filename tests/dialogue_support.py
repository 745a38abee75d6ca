"""Tiny models, speech clips and helpers shared by the dialogue tests (loaded as a pytest plugin)."""


import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_hf_model
from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import read_audio
from freeze_omni.audio.vad import SpeechDetector
from freeze_omni.dialogue import (
    DEFAULT_SYSTEM_PROMPT,
    AnswerAudio,
    AnswerStarted,
    DialogueConfig,
    SpeechEnded,
    TurnEngine,
)
from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.llm import FrozenLLM, KVCache, SamplingConfig
from freeze_omni.llm.state_head import DialogueState, StateHead
from freeze_omni.speech_input import SpeechInput

TOKEN_MS = 100.0  # audio per answer token from the test speaker
LISTEN, ANSWER, IGNORE = DialogueState.LISTEN, DialogueState.ANSWER, DialogueState.IGNORE




def printable_llm(stop_wins: bool = False) -> FrozenLLM:
    """The tiny random qwen2 backbone, made to write printable ASCII only (and to end at once when
    `stop_wins`); otherwise it never stops before `max_answer_tokens`."""
    model, tokenizer = tiny_hf_model("qwen2")
    llm = FrozenLLM.from_hf_model(model, tokenizer)
    pieces = [tokenizer.decode([i]) for i in range(llm.config.vocab_size)]
    printable = torch.tensor([bool(p) and p.isascii() and p.isprintable() and i not in tokenizer.all_special_ids
                              for i, p in enumerate(pieces)])
    bias = torch.where(printable, 0.0, -1e4)
    if stop_wins:
        bias[list(llm.stop_ids)] = 1e4
    head = nn.Linear(llm.hidden_size, llm.config.vocab_size)
    head.weight = llm.model.lm_head.weight
    head.bias = nn.Parameter(bias, requires_grad=False)
    llm.model.lm_head = head
    return llm


@pytest.fixture(scope="module")
def llm() -> FrozenLLM:
    return printable_llm()


@pytest.fixture(scope="module")
def speech_input(llm) -> SpeechInput:
    torch.manual_seed(1)
    encoder = SpeechEncoder(EncoderConfig("conv2d", n_mels=80, dim=32, heads=2, layers=1, ffn_dim=64, conv_channels=8))
    return SpeechInput(encoder, llm.hidden_size).eval()


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    clips = {}
    for name, text in {"q1": "What is the capital of France?", "q2": "Wait, tell me about Spain instead."}.items():
        wav = folder / f"{name}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
        clips[name] = read_audio(wav)
    return clips


@pytest.fixture
def heard(monkeypatch, speech_input) -> list[torch.Tensor]:
    """Every embedding the speech input produces, in order ([n, hidden] per call)."""
    calls: list[torch.Tensor] = []
    step = speech_input.step

    def spy(feats, cache):
        embeds, frames, cache = step(feats, cache)
        calls.append(embeds[0])
        return embeds, frames, cache

    monkeypatch.setattr(speech_input, "step", spy)
    return calls


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def conversation(*parts: np.ndarray) -> np.ndarray:
    """Audio padded to whole 160 ms chunks."""
    audio = np.concatenate(parts)
    return np.concatenate([audio, np.zeros(-audio.size % CHUNK_SAMPLES, np.float32)])


def force(head: StateHead, state: DialogueState) -> None:
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        head.proj.bias[state] = 10.0


def saved_llm(folder, arch: str = "qwen2") -> FrozenLLM:
    """A tiny random LLM saved as a Hugging Face folder `folder / "llm"` (what a bundle's model.json
    can name), loaded in float32."""
    hf_model, tokenizer = tiny_hf_model(arch)
    hf_model.save_pretrained(folder / "llm")
    tokenizer.save_pretrained(folder / "llm")
    return FrozenLLM.load(folder / "llm", dtype=torch.float32)


def forced_head(llm: FrozenLLM, state: DialogueState) -> StateHead:
    head = StateHead(llm.hidden_size)
    force(head, state)
    return head


class AnswerAfterSpeech:
    """Head policy: listen while the user talks, answer on the first chunk after the VAD end."""

    def __init__(self, head: StateHead) -> None:
        self.head = head
        force(head, LISTEN)

    def __call__(self, events) -> None:
        for event in events:
            if isinstance(event, SpeechEnded):
                force(self.head, ANSWER)
            elif isinstance(event, AnswerStarted):
                force(self.head, LISTEN)


class RecordingSpeaker:
    """Text only, or TOKEN_MS of tone per token; remembers every phrase it was given. With
    `slices`, an empty packet (a slice of work with no audio yet) comes before each one."""

    sample_rate = SAMPLE_RATE

    def __init__(self, audio: bool = False, slices: bool = False) -> None:
        self.audio, self.slices = audio, slices
        self.phrases = []

    def speak(self, phrase):
        assert phrase.hidden.shape[0] == len(phrase.token_ids) and phrase.index >= 0
        self.phrases.append(phrase)
        packets = len(phrase.token_ids) if self.audio else 0
        tone = np.full(int(TOKEN_MS * SAMPLE_RATE / 1000), 0.1, np.float32)
        return (p for _ in range(packets) for p in ([np.zeros(0, np.float32)] if self.slices else []) + [tone])

    def tokens(self, start: int = 0, end: int | None = None) -> list[int]:
        return [t for phrase in self.phrases[start:end] for t in phrase.token_ids]


def make_engine(llm, speech_input, detector, head, speaker=None, **settings) -> TurnEngine:
    """Drafts (rule 9) are off unless a test asks for them: the others check a turn's KV chunk by chunk."""
    settings = {"max_answer_tokens": 12, "phrases": PhraseRule(min_tokens=1, max_tokens=4),
                "sampling": SamplingConfig(temperature=1.0), "draft_threshold": 2.0, **settings}
    return TurnEngine(speech_input, llm, head, detector, speaker or RecordingSpeaker(), DialogueConfig(**settings))


def drive(engine: TurnEngine, session, audio: np.ndarray, policy=None, packet: int = CHUNK_SAMPLES) -> list:
    """Feed the audio `packet` samples at a time, doing all answer work after each packet."""
    events = []
    for start in range(0, audio.size, packet):
        new = engine.accept_audio(session, audio[start:start + packet])
        new += engine.step_answer(session, max_steps=10_000)
        if policy is not None:
            policy(new)
        events += new
    return events


def reference_kv(llm: FrozenLLM, pieces: list) -> KVCache:
    """A KV built from the conversation's logical pieces: token ids or [n, hidden] embeddings."""
    kv = llm.new_cache()
    for piece in pieces:
        llm.prefill(llm.embed_ids(piece) if isinstance(piece, list) else piece[None], kv)
    return kv


def system_ids(llm: FrozenLLM) -> list[int]:
    return llm.template.system(llm.tokenizer, DEFAULT_SYSTEM_PROMPT)


def user_prefix(llm: FrozenLLM, speech_input: SpeechInput) -> torch.Tensor:
    return torch.cat([llm.embed_ids(llm.template.user_start)[0], speech_input.prompt.detach()])


def assert_same_kv(actual: KVCache, expected: KVCache) -> None:
    assert actual.length == expected.length
    n = actual.length
    torch.testing.assert_close(actual.keys[:, :, :, :n], expected.keys[:, :, :, :n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(actual.values[:, :, :, :n], expected.values[:, :, :, :n], atol=1e-5, rtol=1e-4)


def of_type(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


@torch.no_grad()

def _signature(event) -> tuple:
    fields = dict(vars(event))
    if isinstance(event, AnswerAudio):
        fields["pcm"] = (fields["pcm"].size, float(fields["pcm"].sum()))
    return type(event).__name__, tuple(sorted(fields.items()))
