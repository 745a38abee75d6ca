"""A CTC loss that pulls speech frames toward the frozen LLM's own input embeddings of the words said.

The next-token loss reaches the adapter only through every layer of the frozen LLM, and early in
training the LLM mostly ignores the speech and writes from its prior. This loss gives the adapter
a direct signal: each frame is scored (cosine, times `scale`) against the input embeddings of
the tokens in the batch's transcripts and a blank, and CTC asks for the transcript's tokens in
order. Frames that look like the right token embeddings are what the LLM can copy from.

Scores are taken around the mean embedding: token embeddings share a large common component, so
plain cosines between a frame and any two tokens differ little and the loss stays at chance.
Centred, tokens point in distinct directions. The blank is a fixed random direction (nearly
orthogonal to every token in hundreds of dimensions), so the loss has no parameters of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLANK_SEED = 0


def embedding_ctc_loss(speech: list[torch.Tensor], targets: list[torch.Tensor], embedding: torch.Tensor,
                       scale: float = 20.0) -> torch.Tensor:
    """speech[i] [T_i, hidden] adapter outputs; targets[i] [n_i] LLM token ids of the transcript;
    embedding [vocab, hidden] the LLM's input embeddings. Mean CTC loss per target token."""
    vocab, remapped = torch.unique(torch.cat(targets), return_inverse=True)
    centre = embedding.float().mean(0)
    tokens = F.normalize(embedding[vocab].float() - centre, dim=-1)
    table = torch.cat([blank_direction(embedding.shape[1], tokens.device)[None], tokens])  # blank first
    lengths = torch.tensor([s.shape[0] for s in speech])
    padded = torch.nn.utils.rnn.pad_sequence([F.normalize(s.float() - centre, dim=-1) for s in speech])  # [T, b, h]
    log_probs = (scale * padded @ table.T).log_softmax(-1)
    target_lengths = torch.tensor([t.numel() for t in targets])
    loss = F.ctc_loss(log_probs, remapped + 1, lengths, target_lengths, blank=0, reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp_min(1)


def blank_direction(hidden: int, device: torch.device | str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(BLANK_SEED)
    return F.normalize(torch.randn(hidden, generator=generator), dim=0).to(device)
