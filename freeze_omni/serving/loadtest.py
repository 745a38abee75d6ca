"""`bench serve`: simulated users talking to a live server on loopback, and what they experienced.

Each user streams its own spoken question in real time with its own sampling seed. Whether an
answer reached the right user is checked against the same model answering that question with
that seed offline, alone: a user's first answer must agree with its own reference (one a prefix
of the other: a barge-in may cut either short). Anything else counts as cross-talk.

Per-chunk latency is the server's own figure (chunk arrival to handled); first-packet latency is
client-side: from sending the chunk on which the server decided to answer to the first answer
output arriving (audio when the model speaks, else the first answer text). How long the first
output takes depends on the question (the first phrase of its answer), so the single-user
figure that loaded levels are compared with asks the same questions, each alone in turn
(`run_alone`), not only the first one.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import float_to_pcm16, read_audio
from freeze_omni.client import Conversation, DialogueClient, quiet_tail
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, TurnEngine
from freeze_omni.eval.report import percentiles
from freeze_omni.serving.app import create_app
from freeze_omni.serving.local import serving
from freeze_omni.serving.protocol import event_message
from freeze_omni.serving.replica import Replica
from freeze_omni.serving.runner import ModelServer, ServerLimits
from freeze_omni.train.turns import TurnPlan, turn_then_quiet

QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you tell me a short joke?",
    "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?",
    "What colour is the sky on a clear day?",
    "How many days are there in a week?",
    "What is the largest planet in our solar system?",
)
REALTIME_MS = 160.0


def spoken_questions(texts: tuple[str, ...] = QUESTIONS, lead_s: float = 0.5,
                     quiet_s: float = 2.0) -> list[np.ndarray]:
    """The questions spoken by espeak-ng at 16 kHz, each between `lead_s` and `quiet_s` of quiet.
    The quiet is a faint noise floor, as a microphone gives and the state head was trained with:
    after digital zeros the shipped model never answers two of these questions."""
    with tempfile.TemporaryDirectory() as folder:
        clips = []
        for i, text in enumerate(texts):
            wav = Path(folder) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
            speech = read_audio(wav)
            turn = TurnPlan("request", -1, lead_s, speech.size / SAMPLE_RATE, 0, seed=i)
            clips.append(turn_then_quiet(turn, speech, quiet_s))
    return clips


def first_answer(messages: list[dict]) -> str:
    """Text of the first answer in a message stream (up to the next answer or its end)."""
    text, started = "", False
    for message in messages:
        kind = message.get("type")
        if kind == "answer_started":
            if started:
                break
            started = True
        elif kind == "answer_text" and started:
            text += message["text"]
        elif kind in ("answer_finished", "interrupted") and started:
            break
    return text


def agrees(got: str, reference: str) -> bool:
    return bool(got) and (got.startswith(reference) or reference.startswith(got))


def reference_answer(engine: TurnEngine, audio: np.ndarray, seed: int, tail_s: float) -> str:
    """The first answer the engine gives `audio` alone, all answer work done after each chunk. The
    audio goes through PCM16 as on the wire: one quantisation step can flip a sampled token."""
    session = engine.new_session("reference", seed=seed)
    audio = float_to_pcm16(np.concatenate([audio, quiet_tail(tail_s)])) / np.float32(32768)
    messages = []
    for start in range(0, audio.size - CHUNK_SAMPLES + 1, CHUNK_SAMPLES):
        events = engine.accept_audio(session, audio[start:start + CHUNK_SAMPLES])
        while engine.has_answer_work(session):
            events += engine.step_answer(session, 1)
        messages += [m for m in map(event_message, events) if isinstance(m, dict)]
        if any(m["type"] in ("answer_finished", "interrupted") for m in messages):
            break
    return first_answer(messages)


def first_packet_ms(record: Conversation) -> float | None:
    """From sending the chunk on which the server decided to answer to that answer's first output
    (audio when the model speaks, else text); for the first answer that produced any."""
    speech = any(isinstance(r.message, bytes) for r in record.received)
    decided = None
    for r in record.received:
        kind = r.message.get("type") if isinstance(r.message, dict) else "audio"
        if kind == "answer_started":
            decided = record.sent_at(r.message["t_ms"])
        elif kind == "interrupted":
            decided = None
        elif decided is not None and kind == ("audio" if speech else "answer_text"):
            return 1000.0 * (r.at - decided)
    return None


@dataclass
class LevelResult:
    users: int
    chunk_latency_ms: dict[str, float | None]
    first_packet_ms: dict[str, float | None]
    cross_talk: int
    answered: int
    expected_answers: int  # users whose question the model answers when asked alone (the references)
    realtime: bool  # p95 chunk latency within one chunk and nobody fell behind
    errors: dict[str, int]
    disagreements: list[dict[str, str | int]]  # per cross-talk case: user, its reference, what it got
    chunk_samples_ms: list[float] = field(default_factory=list, repr=False)
    first_packet_samples_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_samples_ms")}


async def run_level(replicas: list[Replica], questions: list[np.ndarray], references: list[str], users: int,
                    tail_s: float, first_user: int = 0) -> LevelResult:
    """Users first_user .. first_user + users - 1 talk at once; user i asks question i with seed i."""
    server = ModelServer(replicas, ServerLimits(max_users=users))
    ids = range(first_user, first_user + users)
    async with serving(create_app(server)) as url:
        url = url.replace("http", "ws", 1) + "/ws"

        async def user(i: int) -> Conversation:
            await asyncio.sleep((i - first_user) * REALTIME_MS / 1000 / users)  # users do not start in lockstep
            async with await DialogueClient.connect(url, seed=i) as client:
                return await client.converse(questions[i % len(questions)], realtime=True, tail_s=tail_s,
                                             timeout_s=tail_s + 30)

        records = await asyncio.gather(*(user(i) for i in ids))
    answers = {i: first_answer(r.events()) for i, r in zip(ids, records)}
    disagreements = [{"user": i, "reference": references[i], "got": got}
                     for i, got in answers.items() if got and not agrees(got, references[i])]
    errors = Counter(error["code"] for record in records for error in record.events("error"))
    chunks = list(server.metrics.chunk_latency_ms.recent)
    packets = [ms for ms in map(first_packet_ms, records) if ms is not None]
    return _level(users, chunks, packets, len(disagreements), sum(1 for a in answers.values() if a),
                  sum(1 for i in ids if references[i]), errors, disagreements)


async def run_alone(replicas: list[Replica], questions: list[np.ndarray], references: list[str], users: int,
                    tail_s: float) -> LevelResult:
    """The single-user level: users 0 .. users - 1 each alone on the server, one after another."""
    runs = [await run_level(replicas, questions, references, 1, tail_s, first_user=i) for i in range(users)]
    errors = sum((Counter(run.errors) for run in runs), Counter())
    return _level(1, [ms for r in runs for ms in r.chunk_samples_ms],
                  [ms for r in runs for ms in r.first_packet_samples_ms], sum(r.cross_talk for r in runs),
                  sum(r.answered for r in runs), sum(r.expected_answers for r in runs), errors,
                  [d for r in runs for d in r.disagreements])


def _level(users: int, chunks: list[float], packets: list[float], cross_talk: int, answered: int, expected: int,
           errors: dict[str, int], disagreements: list[dict[str, str | int]]) -> LevelResult:
    latency = percentiles(chunks)
    realtime = latency["p95"] is not None and latency["p95"] <= REALTIME_MS and "too_far_behind" not in errors
    return LevelResult(users, latency, percentiles(packets), cross_talk, answered, expected, realtime, dict(errors),
                       disagreements, chunks, packets)


def levels(users: int) -> list[int]:
    """1, 2, 4, ... below `users`, then `users`."""
    out, n = [], 1
    while n < users:
        out.append(n)
        n *= 2
    return out + [users]
