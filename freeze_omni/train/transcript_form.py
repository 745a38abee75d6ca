"""How input stage 2 asks the frozen LLM to write down what it heard.

    [system instruction | user turn start | prompt embeddings | heard embeddings |
     user turn end, assistant start | answer lead] -> transcript, closing text, end of turn

Shared by the stage that teaches the prompt embeddings to make the LLM copy typed text
(`stages/copy_prompt.py`) and the stage that teaches speech to be copied (`stages/encoder_llm.py`),
so a prompt trained by the first fits the second. The LLM is an argument, not a member: the form
holds only its token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from freeze_omni.llm import FrozenLLM
from freeze_omni.train.sequences import PackedRows, pack_rows

ASR_INSTRUCTION = "Write down exactly what the user says, word for word."


class TranscriptForm(nn.Module):
    def __init__(self, llm: FrozenLLM, instruction: str = ASR_INSTRUCTION, answer_lead: str = "",
                 answer_close: str = "") -> None:
        super().__init__()
        template, tokenizer = llm.template, llm.tokenizer
        self.register_buffer("prefix_ids", torch.tensor(template.system(tokenizer, instruction) + template.user_start),
                             persistent=False)
        lead = tokenizer.encode(answer_lead, add_special_tokens=False) if answer_lead else []
        self.register_buffer("suffix_ids", torch.tensor(template.user_end_assistant_start + lead), persistent=False)
        self.end_id = (template.assistant_end or [tokenizer.eos_token_id])[0]
        self.answer_close = answer_close

    def target_ids(self, llm: FrozenLLM, transcript: str) -> list[int]:
        """What the LLM should write after the lead: the transcript, the closing text, the end."""
        return llm.tokenizer.encode(transcript + self.answer_close, add_special_tokens=False) + [self.end_id]

    def prefix(self, llm: FrozenLLM, prompt: torch.Tensor) -> torch.Tensor:
        """[p, hidden] float32: the template up to the user turn, then the prompt embeddings."""
        return torch.cat([llm.embed(self.prefix_ids[None])[0].float(), prompt])

    def suffix(self, llm: FrozenLLM) -> torch.Tensor:
        return llm.embed(self.suffix_ids[None])[0].float()

    def rows(self, llm: FrozenLLM, prompt: torch.Tensor, heard: Sequence[torch.Tensor],
             targets: Sequence[torch.Tensor]) -> PackedRows:
        """Training rows, labels on the targets only."""
        return pack_rows(self.prefix(llm, prompt), heard, self.suffix(llm), targets, llm.embed)

    @torch.no_grad()
    def read(self, llm: FrozenLLM, prompt: torch.Tensor, heard: torch.Tensor, max_tokens: int = 80) -> str:
        """The transcript the LLM writes (greedy) for one [n, hidden] span of heard embeddings."""
        row = torch.cat([self.prefix(llm, prompt), heard, self.suffix(llm)])[None]
        tokens = [t for t, _ in llm.generate_from_embeds(row, llm.new_cache(), max_new_tokens=max_tokens)]
        text = llm.tokenizer.decode([t for t in tokens if t not in llm.stop_ids])
        return (text.split(self.answer_close)[0] if self.answer_close else text).strip()
