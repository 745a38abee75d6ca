"""Chunk-level dialogue state prediction: a linear layer on the frozen LLM's last hidden state.

After the embeddings of each 160 ms input chunk are prefilled, the hidden state at the chunk's
last position says what the assistant should do now. This is how the frozen LLM itself, not a
silence timer, decides that the user has finished a request (published Freeze-Omni design).
"""

from __future__ import annotations

from enum import IntEnum

import torch
from torch import nn


class DialogueState(IntEnum):
    LISTEN = 0  # the user is still talking: keep listening
    ANSWER = 1  # the user finished a request: answer now (or interrupt the current answer)
    IGNORE = 2  # not meant for the assistant (noise, backchannel, other people): forget it


class StateHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, len(DialogueState))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., hidden] (any dtype) -> [..., 3] logits in the head's own dtype."""
        return self.proj(hidden.to(device=self.proj.weight.device, dtype=self.proj.weight.dtype))

    @torch.no_grad()
    def decide(self, hidden: torch.Tensor, answer_threshold: float = 0.0) -> tuple[DialogueState, tuple[float, float, float]]:
        """One position's hidden state [hidden] or [1, hidden] -> the most likely state and all
        three probabilities. ANSWER must also reach `answer_threshold`, else it is LISTEN: a
        false answer costs the user more than a chunk of delay, so a model can be tuned to wait."""
        probs = self(hidden.reshape(-1)).float().softmax(-1)
        state = DialogueState(int(probs.argmax()))
        if state is DialogueState.ANSWER and probs[state] < answer_threshold:
            state = DialogueState.LISTEN
        return state, tuple(float(p) for p in probs)
