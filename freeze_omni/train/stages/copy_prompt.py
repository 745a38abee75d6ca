"""Input stage 2a: prompt embeddings that make the frozen LLM copy what it was given, from text alone.

A small LLM does not reliably repeat a message even after `You said: "`: from its own token
embeddings of 40 held-out sentences, SmolLM2-135M repeated 2 exactly. Stage 2 then asks the
speech side to become something the LLM copies while the LLM does not copy yet. This stage
trains only the prompt embeddings, on the rows stage 2 uses (`TranscriptForm`), with a text's own
token embeddings where the speech will be, optionally each followed by `blank_frames` zero vectors
(speech comes at ~12.5 embeddings per second, text at ~3 tokens). Stage 2 starts from its prompt
(`encoder-llm` setting `prompt_init`). No speech and no encoder: a step costs one LLM pass.
Evaluation: exact copies and WER of the greedy transcripts of held-out (dev split) texts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from freeze_omni.data.plan import text_split
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.manifest import evenly_spaced
from freeze_omni.eval.metrics import error_rates
from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import StageSettings
from freeze_omni.train.sequences import next_token_loss
from freeze_omni.train.transcript_form import ASR_INSTRUCTION, TranscriptForm


@dataclass
class CopyPromptSettings(StageSettings):
    llm: str = ""                # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    instruction: str = ASR_INSTRUCTION  # these four must equal stage 2's (checked when it loads the prompt)
    answer_lead: str = ""
    answer_close: str = ""
    prompt_length: int = 4
    texts_file: str = ""         # one text a line (as `data synth --texts`), split by `text_split`; "" = the corpus mix
    batch_texts: int = 16
    blank_frames: int = 0        # zero vectors after each token of the copied text
    eval_texts: int = 40
    seed: int = 0

    def form_key(self) -> tuple[str, ...]:
        """What a prompt trained here is bound to."""
        return (self.llm, self.instruction, self.answer_lead, self.answer_close)


class CopyPromptModel(nn.Module):
    def __init__(self, llm: FrozenLLM, form: TranscriptForm, prompt_length: int, blank_frames: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        self.llm, self.form, self.blank_frames = llm, form, blank_frames
        # start from real token embeddings, which lie where the LLM expects its input
        table = llm.model.embed.weight
        picks = torch.randint(0, table.shape[0], (prompt_length,), generator=torch.Generator().manual_seed(seed))
        self.prompt = nn.Parameter(table[picks].detach().float().clone())

    def heard(self, ids: torch.Tensor) -> torch.Tensor:
        """[n] token ids -> [n * (1 + blank_frames), hidden]: the span the LLM is to copy from."""
        embeds = self.llm.embed(ids[None])[0].float()
        if not self.blank_frames:
            return embeds
        blanks = embeds.new_zeros(embeds.shape[0], self.blank_frames, embeds.shape[1])
        return torch.cat([embeds[:, None], blanks], 1).flatten(0, 1)

    def forward(self, heard_ids: list[torch.Tensor], targets: list[torch.Tensor]):
        packed = self.form.rows(self.llm, self.prompt, [self.heard(ids) for ids in heard_ids], targets)
        device = self.prompt.device
        hidden = self.llm(packed.embeds, packed.attention_mask.to(device))
        loss, accuracy = next_token_loss(hidden, packed.labels.to(device), self.llm.logits)
        return loss, {"token_accuracy": accuracy}

    def copy(self, text: str) -> str:
        """What the LLM writes back for `text` (greedy)."""
        ids = torch.tensor(self.llm.tokenizer.encode(text, add_special_tokens=False), device=self.prompt.device)
        return self.form.read(self.llm, self.prompt, self.heard(ids))


def copy_texts(settings: CopyPromptSettings) -> list[str]:
    """The texts file read and normalised as the corpus builder reads one, else the corpus mix."""
    from freeze_omni.data.texts import default_texts, read_text_files

    items = read_text_files([Path(settings.texts_file)]) if settings.texts_file else default_texts(settings.seed)
    return [item.text for item in items]


class CopyPromptStage:
    def __init__(self, settings: CopyPromptSettings, llm: FrozenLLM | None = None) -> None:
        llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
        form = TranscriptForm(llm, settings.instruction, settings.answer_lead, settings.answer_close)
        self.module = CopyPromptModel(llm, form, settings.prompt_length, settings.blank_frames, settings.seed)
        self.settings = settings
        texts = copy_texts(settings)
        self.train_texts = [t for t in texts if text_split(t) == "train"]
        self.dev_texts = evenly_spaced([t for t in texts if text_split(t) == "dev"], settings.eval_texts)
        if len(self.train_texts) < settings.batch_texts or not self.dev_texts:
            raise FreezeOmniError(f"{len(self.train_texts)} train and {len(self.dev_texts)} dev texts: need at "
                                  f"least batch_texts ({settings.batch_texts}) and one")

    def plan(self, epoch: int, seed: int) -> list[list[int]]:
        order = list(range(len(self.train_texts)))
        random.Random(f"copy-prompt-{seed}-{epoch}").shuffle(order)
        size = self.settings.batch_texts
        return [order[i:i + size] for i in range(0, len(order) - size + 1, size)]

    def load(self, spec: list[int], device: torch.device) -> dict[str, Any]:
        llm, form = self.module.llm, self.module.form
        texts = [self.train_texts[i] for i in spec]
        return {"heard_ids": [torch.tensor(llm.tokenizer.encode(t, add_special_tokens=False), device=device)
                              for t in texts],
                "targets": [torch.tensor(form.target_ids(llm, t), device=device) for t in texts]}

    def evaluate(self, module: CopyPromptModel) -> dict[str, float]:
        copies = [module.copy(text) for text in self.dev_texts]
        exact = sum(c == t for c, t in zip(copies, self.dev_texts)) / len(self.dev_texts)
        return {"exact": exact, "wer": error_rates(self.dev_texts, copies).wer}


def trained_prompt(path: str | Path, expected: CopyPromptSettings) -> torch.Tensor:
    """The prompt of a copy-prompt checkpoint, refused unless it was trained for the same LLM,
    instruction, lead and closing text as `expected` (stage 2's)."""
    path = Path(path)
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such copy-prompt checkpoint (run `freeze-omni train copy-prompt` first)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    trained = CopyPromptSettings.from_dict(checkpoint["config"]["stage"])
    if trained.form_key() != expected.form_key():
        raise FreezeOmniError(f"{path}: the prompt was trained for (llm, instruction, lead, close) = "
                              f"{trained.form_key()}, not {expected.form_key()}")
    return checkpoint["model"]["prompt"]
