"""Play a recording into a turn engine as a microphone would, and collect what happened per turn.

Input goes in packets of `packet_samples` (160 ms chunks by default; a microphone client may send
less, which lets talk-over pause an answer sooner). After each packet the engine may do answer
work for as long as the packet lasts (at least one unit per completed chunk), so generation
competes with listening as it would live; with `realtime` the loop also sleeps out the rest of
each packet. After the recording, silence keeps the clock running until the conversation is idle
(so the last answer can finish or be decided).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.quiet import noise_floor
from freeze_omni.dialogue.events import (AnswerAudio, AnswerFinished, AnswerPaused, AnswerStarted, AnswerText, Event,
                                         Interrupted, StateDecision)
from freeze_omni.dialogue.session import Phase
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, TurnEngine
from freeze_omni.llm.state_head import DialogueState


@dataclass
class TurnRecord:
    """One accepted request and its answer (the `turns` entries of `chat --json`)."""

    state_events: list[dict] = field(default_factory=list)
    answer: str = ""
    interrupted: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)
    audio: list[np.ndarray] = field(default_factory=list, repr=False)
    sample_rate: int = SAMPLE_RATE
    request: str | None = None  # the engine hears speech; it does not transcribe it
    speech_end_ms: float = 0.0  # where the request's speech ended (latencies count from here)


def replay(engine: TurnEngine, audio: np.ndarray, realtime: bool = False, max_tail_s: float = 60.0,
           on_event: Callable[[Event], None] | None = None, packet_samples: int = CHUNK_SAMPLES) -> list[TurnRecord]:
    if packet_samples < 1:
        raise ValueError(f"packet_samples must be >= 1, got {packet_samples}")
    session = engine.new_session("replay")
    turns: list[TurnRecord] = []
    pending_states: list[dict] = []

    def handle(event: Event) -> None:
        nonlocal pending_states
        if on_event:
            on_event(event)
        if isinstance(event, StateDecision):
            pending_states.append({"t_ms": event.t_ms, "state": event.state.name.lower()})
            if event.state == DialogueState.IGNORE:
                pending_states = []
        elif isinstance(event, Interrupted) and turns:
            turns[-1].interrupted, turns[-1].answer = True, event.kept_text
        elif isinstance(event, AnswerStarted):
            record = TurnRecord(state_events=pending_states, speech_end_ms=event.speech_end_ms)
            pending_states = []
            record.latency_ms["state_decision"] = event.t_ms - event.speech_end_ms
            turns.append(record)
        elif isinstance(event, AnswerText) and turns:
            turns[-1].latency_ms.setdefault("first_text", event.t_ms - turns[-1].speech_end_ms)
        elif isinstance(event, AnswerAudio) and turns:
            turns[-1].latency_ms.setdefault("first_audio", event.t_ms - turns[-1].speech_end_ms)
            turns[-1].audio.append(event.pcm)
            turns[-1].sample_rate = event.sample_rate
        elif isinstance(event, AnswerPaused) and turns:
            turns[-1].audio = _drop_tail(turns[-1].audio, event.unplayed_samples)  # sent again on resume
        elif isinstance(event, AnswerFinished) and turns and not turns[-1].interrupted:
            turns[-1].answer = event.text

    packets = [audio[i:i + packet_samples] for i in range(0, audio.size, packet_samples)]
    packet_s = packet_samples / SAMPLE_RATE
    quiet = np.random.default_rng(0)
    tail, fed = 0, 0
    while packets or (session.phase != Phase.IDLE and tail * packet_s < max_tail_s) or tail * packet_s < 1.0:
        if packets:
            packet = packets.pop(0)
        else:
            packet, tail = noise_floor(packet_samples, rng=quiet), tail + 1
        chunk_done = (fed + packet.size) // CHUNK_SAMPLES > fed // CHUNK_SAMPLES
        fed += packet.size
        start = time.perf_counter()
        for event in engine.accept_audio(session, packet):
            handle(event)
        steps = 0  # at least one unit of answer work per chunk, so a loaded machine still progresses
        while engine.has_answer_work(session) and ((steps == 0 and chunk_done) or time.perf_counter() - start < packet_s):
            for event in engine.step_answer(session, 1):
                handle(event)
            steps += 1
        if realtime:
            time.sleep(max(0.0, packet_s - (time.perf_counter() - start)))
    return turns


def _drop_tail(pieces: list[np.ndarray], n: int) -> list[np.ndarray]:
    """`pieces` without their last `n` samples."""
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return [audio[:audio.size - n]]
