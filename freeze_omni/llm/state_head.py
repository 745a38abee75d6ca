"""Chunk-level dialogue state prediction: a linear layer on the frozen LLM's last hidden state,
optionally with what the encoder heard in the last few chunks.

After the embeddings of each 160 ms input chunk are prefilled, the hidden state at the chunk's
last position says what the assistant should do now. This is how the frozen LLM itself, not a
silence timer, decides that the user has finished a request (published Freeze-Omni design).

The LLM reads speech only through the adapter, which is trained to carry words; how a sound ended
(a request trailing off, or speech cut mid-word) is mostly lost on the way. With `acoustic_chunks`
> 0 the head also reads the mean encoder frame of each of the last `acoustic_chunks` chunks
(`acoustic_context`), through a second linear map that starts at zero, so a head refitted from a
plain one starts from the same decisions.
"""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import nn


class DialogueState(IntEnum):
    LISTEN = 0  # the user is still talking: keep listening
    ANSWER = 1  # the user finished a request: answer now (or interrupt the current answer)
    IGNORE = 2  # not meant for the assistant (noise, backchannel, other people): forget it


def chunk_means(frames: torch.Tensor, frames_per_chunk: int) -> torch.Tensor:
    """Encoder frames [t, d] of whole chunks -> the mean frame of each chunk [t / frames_per_chunk, d]."""
    t, d = frames.shape
    if t % frames_per_chunk:
        raise ValueError(f"{t} encoder frames are not whole chunks of {frames_per_chunk}")
    return frames.reshape(t // frames_per_chunk, frames_per_chunk, d).mean(1)


def acoustic_context(means: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk means [n, d] after `history` [k - 1, d] (the k - 1 chunks before them, oldest first;
    zeros before a stream's start) -> each chunk's input to the head, its own mean then those of
    the k - 1 chunks before it [n, k * d], and the history after the last chunk. Offline (zero
    history, all chunks at once) and streaming (chunk by chunk) give the same rows."""
    k = history.shape[0] + 1
    seen = torch.cat([history.to(means.dtype), means])
    rows = torch.cat([seen[k - 1 - j: seen.shape[0] - j] for j in range(k)], dim=1)
    return rows, seen[seen.shape[0] - (k - 1):]


def decision(probabilities: tuple[float, float, float], answer_threshold: float = 0.0,
             ignore_threshold: float = 0.0) -> DialogueState:
    """The most likely state, where ANSWER must also reach `answer_threshold` and IGNORE
    `ignore_threshold`, else it is LISTEN: a false answer, or a request dropped on one unsure
    chunk, costs the user more than a chunk of delay, so a model can be tuned to wait."""
    state = DialogueState(max(range(len(probabilities)), key=probabilities.__getitem__))
    needed = {DialogueState.ANSWER: answer_threshold, DialogueState.IGNORE: ignore_threshold}.get(state, 0.0)
    return DialogueState.LISTEN if probabilities[state] < needed else state


class StateHead(nn.Module):
    def __init__(self, hidden_size: int, acoustic_size: int = 0, acoustic_chunks: int = 0) -> None:
        super().__init__()
        if acoustic_chunks < 0 or (acoustic_chunks > 0) != (acoustic_size > 0):
            raise ValueError(f"acoustic_size ({acoustic_size}) and acoustic_chunks ({acoustic_chunks}) must be "
                             f"both > 0 or both 0")
        self.acoustic_size, self.acoustic_chunks = acoustic_size, acoustic_chunks
        self.proj = nn.Linear(hidden_size, len(DialogueState))
        self.acoustic: nn.Linear | None = None
        if acoustic_chunks:
            self.acoustic = nn.Linear(acoustic_size * acoustic_chunks, len(DialogueState), bias=False)
            nn.init.zeros_(self.acoustic.weight)

    def initial_history(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The acoustic history of a stream that has heard nothing ([acoustic_chunks - 1, d] zeros)."""
        return torch.zeros(max(self.acoustic_chunks - 1, 0), self.acoustic_size, device=device)

    def forward(self, hidden: torch.Tensor, acoustic: torch.Tensor | None = None) -> torch.Tensor:
        """[..., hidden] (any dtype) and, for an acoustic head, [..., acoustic_chunks * d] from
        `acoustic_context` -> [..., 3] logits in the head's own dtype."""
        weight = self.proj.weight
        logits = self.proj(hidden.to(device=weight.device, dtype=weight.dtype))
        if self.acoustic is None:
            if acoustic is not None:
                raise ValueError("this state head reads no acoustic input")
            return logits
        if acoustic is None:
            raise ValueError(f"this state head also reads the encoder's last {self.acoustic_chunks} chunks")
        return logits + self.acoustic(acoustic.to(device=weight.device, dtype=weight.dtype))

    @torch.no_grad()
    def decide(self, hidden: torch.Tensor, answer_threshold: float = 0.0, acoustic: torch.Tensor | None = None,
               ignore_threshold: float = 0.0) -> tuple[DialogueState, tuple[float, float, float]]:
        """One position's hidden state [hidden] or [1, hidden] (and its acoustic row) -> the most
        likely state and all three probabilities."""
        logits = self(hidden.reshape(-1), None if acoustic is None else acoustic.reshape(-1))
        probabilities = tuple(float(p) for p in logits.float().softmax(-1))
        return decision(probabilities, answer_threshold, ignore_threshold), probabilities
