"""A CTC loss that pulls speech frames toward the frozen LLM's own input embeddings of the words said.

The next-token loss reaches the adapter only through every layer of the frozen LLM, and early in
training the LLM mostly ignores the speech and writes from its prior. This loss gives the adapter
a direct signal: each frame is scored (cosine, times `scale`) against the input embeddings of
the tokens in the batch's transcripts and a blank, and CTC asks for the transcript's tokens in
order. Frames that look like the right token embeddings are what the LLM can read at once.
No parameters: the vocabulary is the batch's own tokens, and the blank is the mean embedding
(a direction that no single token owns).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_ctc_loss(speech: list[torch.Tensor], targets: list[torch.Tensor], embedding: torch.Tensor,
                       scale: float = 20.0) -> torch.Tensor:
    """speech[i] [T_i, hidden] adapter outputs; targets[i] [n_i] LLM token ids of the transcript;
    embedding [vocab, hidden] the LLM's input embeddings. Mean CTC loss per target token."""
    vocab, remapped = torch.unique(torch.cat(targets), return_inverse=True)
    table = torch.cat([embedding.float().mean(0, keepdim=True), embedding[vocab].float()])  # blank first
    table = F.normalize(table, dim=-1)
    lengths = torch.tensor([s.shape[0] for s in speech])
    padded = torch.nn.utils.rnn.pad_sequence([F.normalize(s.float(), dim=-1) for s in speech])  # [T, b, hidden]
    log_probs = (scale * padded @ table.T).log_softmax(-1)
    target_lengths = torch.tensor([t.numel() for t in targets])
    loss = F.ctc_loss(log_probs, remapped + 1, lengths, target_lengths, blank=0, reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp_min(1)
