"""The state head fitted on what the turn engine itself hears (`freeze-omni train state-head`).

Stage 3 learns the head on conversations it lays out offline. This fit instead replays generated
turns from the corpus's train split (requests, fillers and backchannels, requests cut off
mid-sentence, noise: `eval.duplex.build_cases`) through a bundle's `TurnEngine` with a head that
only records: every chunk's LLM last hidden state and acoustic row, exactly as the engine computes
them at inference (VAD onset, pre-roll, chunking), and when each ended after its turn's sound.
At fit time, chunks are labelled as `train/turns.py` labels them (`turns.chunk_label`: listen until `listen_margin` after the sound, answer or ignore from
`decide_after`, nothing in between; nothing after `HORIZON_MS`), and the head is fitted by full-batch AdamW on
standardised inputs with class-balanced cross-entropy; the standardisation is folded into the
weights. Only the head changes: the speech input and the LLM are the bundle's.

A turn heard in a fresh session is not what the head hears when the user talks over an answer:
then the LLM has a whole exchange and a cut answer before the speech. So talk-overs are replayed
too (`talk_over_cases`): a request that the bundle's own head answers (spoken by its decoder),
then, while the answer plays, a request, filler, fragment or noise, labelled as above from the
end of that sound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.dialogue.turn import CHUNK_SAMPLES, TurnEngine
from freeze_omni.eval.duplex import BARGE_IN_GAP_SECONDS, DuplexCase, never_answering, replay_decisions
from freeze_omni.llm.state_head import DialogueState, StateHead
from freeze_omni.train.sequences import IGNORE
from freeze_omni.train.turns import TurnSettings, chunk_label

HORIZON_MS = 1200.0  # chunks heard up to this long after a sound (stage 3's evaluation tail)


@dataclass
class HeardChunks:
    """Per chunk the engine decided on: LLM last hidden state [n, hidden], acoustic row [n, a]
    (a = 0 for a plain head), when it ended after the end of its turn's sound [n] (ms), and
    whether that sound was a request [n]. Labels are made from the last two at fit time, so one
    replay serves any `TurnSettings`."""

    hidden: torch.Tensor
    acoustic: torch.Tensor
    after_ms: torch.Tensor
    request: torch.Tensor

    def labels(self, settings: TurnSettings) -> torch.Tensor:
        """Each chunk's label (`IGNORE` = no loss) under `settings`."""
        return torch.tensor([replay_label(t, r, settings) for t, r in zip(self.after_ms.tolist(), self.request.tolist())],
                            dtype=torch.long)


def replay_label(t_ms: float, request: bool, settings: TurnSettings) -> int:
    """The label of a replayed chunk that ends `t_ms` after the end of its turn's sound: stage 3's
    `chunk_label`, and no loss past `HORIZON_MS`."""
    if t_ms >= HORIZON_MS:
        return IGNORE
    return chunk_label(t_ms / 1000, DialogueState.ANSWER if request else DialogueState.IGNORE, settings)


class _RecordingHead(StateHead):
    """Records what it is asked to decide on and keeps listening (no answer starts). With a head
    to `answer_first` with, that head decides until it answers once; only what comes after is
    recorded (`reset` before each talk-over case)."""

    def __init__(self, hidden_size: int, acoustic_size: int, acoustic_chunks: int,
                 answer_first: StateHead | None = None) -> None:
        super().__init__(hidden_size, acoustic_size, acoustic_chunks)
        if answer_first is not None and answer_first.acoustic_chunks > acoustic_chunks:
            raise ValueError(f"the answering head reads {answer_first.acoustic_chunks} chunks of the encoder, "
                             f"the recording only {acoustic_chunks}")
        self.heard: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.answer_first = answer_first
        self.answered = answer_first is None

    def reset(self) -> None:
        self.answered = self.answer_first is None

    @torch.no_grad()
    def decide(self, hidden: torch.Tensor, answer_threshold: float = 0.0, acoustic: torch.Tensor | None = None,
               ignore_threshold: float = 0.0) -> tuple[DialogueState, tuple[float, float, float]]:
        if not self.answered:
            first = self.answer_first  # its acoustic row: the first (newest) of the chunks recorded here
            own = acoustic.reshape(-1)[: first.acoustic_chunks * first.acoustic_size] if first.acoustic_chunks else None
            state, probabilities = first.decide(hidden, answer_threshold, own, ignore_threshold)
            self.answered = state == DialogueState.ANSWER
            return state, probabilities
        self.heard.append((hidden.reshape(-1).float().cpu(), None if acoustic is None else acoustic.reshape(-1).cpu()))
        return DialogueState.LISTEN, (1.0, 0.0, 0.0)


def talk_over_cases(cases: Sequence[DuplexCase]) -> list[DuplexCase]:
    """Every case but the barge-ins, spoken while an answer plays: another request of `cases` up to
    `BARGE_IN_GAP_SECONDS` after its end (whole chunks), then the case's own audio. `mark_ms` stays
    the end of the case's own sound."""
    requests = [c for c in cases if c.kind == "request"]
    if len(requests) < 2:
        raise ValueError("talk-overs need at least two requests")
    talk_overs = []
    for i, case in enumerate(c for c in cases if c.kind != "barge-in"):
        first = requests[(i + 1) % len(requests)]  # case i of the requests is requests[i]: never itself
        chunks = math.ceil((first.mark_ms / 1000 + BARGE_IN_GAP_SECONDS) * SAMPLE_RATE / CHUNK_SAMPLES)
        lead = first.audio[: chunks * CHUNK_SAMPLES]
        talk_overs.append(DuplexCase(case.kind, np.concatenate([lead, case.audio]),
                                     1000 * lead.size / SAMPLE_RATE + case.mark_ms,
                                     f"{first.text} / {case.text}"))
    return talk_overs


def hear_cases(engine: TurnEngine, cases: Sequence[DuplexCase], acoustic_chunks: int,
               log: Callable[[str], None] = print, talk_overs: bool = False) -> HeardChunks:
    """Replay every case (barge-ins left out) and record each chunk the engine decided on. With
    `talk_overs` (cases of `talk_over_cases`), the engine's own head answers the first request and
    only the chunks decided after that are heard (an engine with a speaker makes the answer play)."""
    encoder_dim = engine.speech_input.encoder.config.dim
    head = _RecordingHead(engine.llm.hidden_size, encoder_dim if acoustic_chunks else 0, acoustic_chunks,
                          engine.state_head if talk_overs else None).to(engine.llm.device)
    config = engine.config if talk_overs else never_answering(engine.config)
    recorder = TurnEngine(engine.speech_input, engine.llm, head, engine.detector, engine.speaker, config)
    after_ms, request = [], []
    for number, case in enumerate(c for c in cases if c.kind != "barge-in"):
        head.reset()
        ((_, decisions),) = replay_decisions(recorder, [case], log=lambda _: None)
        if talk_overs:
            answers = [i for i, d in enumerate(decisions) if d.state == DialogueState.ANSWER]
            decisions = decisions[answers[0] + 1:] if answers else []
        after_ms += [d.t_ms - case.mark_ms for d in decisions]
        request += [case.kind == "request"] * len(decisions)
        log(f"[{number + 1}] {case.kind}: {len(decisions)} chunks heard")
    if len(after_ms) != len(head.heard):
        raise RuntimeError(f"{len(head.heard)} chunks heard but {len(after_ms)} decisions made")
    if not after_ms:
        raise ValueError("no chunk was heard: nothing to fit the state head on")
    return HeardChunks(torch.stack([h for h, _ in head.heard]),
                       torch.stack([torch.zeros(0) if a is None else a for _, a in head.heard]),
                       torch.tensor(after_ms, dtype=torch.float32), torch.tensor(request))


def join(parts: Sequence[HeardChunks]) -> HeardChunks:
    """Single turns and talk-overs, heard by different engines, fitted as one set."""
    return HeardChunks(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(HeardChunks)))


def save_replays(path: Path, key: dict, heard: HeardChunks) -> None:
    """What the engine heard, with what it was heard from (`key`), so a refit can skip the replays."""
    torch.save({"key": key, "heard": asdict(heard)}, path.with_name(path.name + ".partial"))
    path.with_name(path.name + ".partial").replace(path)


def load_replays(path: Path, key: dict) -> HeardChunks | None:
    """The replays kept in `path` if they were heard from `key`, else None."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return HeardChunks(**saved["heard"]) if saved.get("key") == key else None


def fit_state_head(hidden: torch.Tensor, acoustic: torch.Tensor, labels: torch.Tensor, acoustic_chunks: int,
                   steps: int = 400, lr: float = 3e-3, weight_decay: float = 1e-3, seed: int = 0) -> StateHead:
    """A linear head on [hidden, acoustic] of the labelled chunks (`IGNORE`: left out); returned
    with the input standardisation folded in, so it reads raw hidden states and acoustic rows."""
    keep = labels != IGNORE
    x = torch.cat([hidden, acoustic], 1)[keep].float()
    y = labels[keep]
    if len(set(y.tolist())) < len(DialogueState):
        raise ValueError(f"the replays hold chunks of only {sorted(set(y.tolist()))} of the 3 states")
    mean, std = x.mean(0), x.std(0) + 1e-4
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        linear = nn.Linear(x.shape[1], len(DialogueState))
    counts = torch.bincount(y, minlength=len(DialogueState)).float()
    balance = counts.sum() / (len(DialogueState) * counts)
    optimizer = torch.optim.AdamW(linear.parameters(), lr, weight_decay=weight_decay)
    standard = (x - mean) / std
    for _ in range(steps):
        loss = nn.functional.cross_entropy(linear(standard), y, weight=balance)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden_size, acoustic_size = hidden.shape[1], acoustic.shape[1]
    head = StateHead(hidden_size, acoustic_size // max(acoustic_chunks, 1), acoustic_chunks)
    with torch.no_grad():
        weight = linear.weight / std
        head.proj.weight.copy_(weight[:, :hidden_size])
        head.proj.bias.copy_(linear.bias - weight @ mean)
        if head.acoustic is not None:
            head.acoustic.weight.copy_(weight[:, hidden_size:])
    return head
