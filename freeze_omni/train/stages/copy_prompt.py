"""Input stage 2a: prompt embeddings that make the frozen LLM copy what it was given, from text alone.

A small LLM does not reliably repeat a message even after `You said: "`: from its own token
embeddings of 40 held-out sentences, SmolLM2-135M repeated 2 exactly. Stage 2 then asks the
speech side to become something the LLM copies while the LLM does not copy yet. This stage
trains only the prompt embeddings, on the rows stage 2 uses (`TranscriptForm`), with a text's own
token embeddings where the speech will be. With `blank_frames` N, the tokens come as a token
readout (adapter.py) hears them: speech runs at ~12.5 embeddings per second and text at ~3 tokens,
so each token is followed by 0..N blank vectors (drawn per token), the text by N..2N more
(silence after speech) and preceded by 0..N. The blank vector is zeros, or with `learn_blank` a
vector learnt with the prompt: with 3 zero vectors after every token the prompt reached only
12/40 exact copies, so what a blank looks like is left to the LLM. With `word_noise`, training texts
are misheard first (words swapped for other words of the texts, dropped or added, `misheard`) and
the LLM copies the misheard text: speech recognised with errors reads like that, and a prompt
trained on clean text alone let the LLM run on instead of closing the quote. Stage 2 starts from
the prompt and blank (`encoder-llm` setting `prompt_init`). No speech and no encoder: a step costs
one LLM pass.
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
    blank_frames: int = 0        # up to this many blank vectors after each token of the copied text
    learn_blank: bool = False    # learn the blank vector (else zeros)
    word_noise: float = 0.0      # share of words misheard in training texts (`misheard`)
    eval_texts: int = 40
    seed: int = 0

    def form_key(self) -> tuple[str, ...]:
        """What a prompt trained here is bound to."""
        return (self.llm, self.instruction, self.answer_lead, self.answer_close)


def blank_gaps(n_tokens: int, blank_frames: int, generator: torch.Generator) -> torch.Tensor:
    """[n_tokens + 2] blank counts: before the text, after each token, then the silence after it."""
    gaps = torch.randint(0, blank_frames + 1, (n_tokens + 2,), generator=generator)
    gaps[-1] += blank_frames
    return gaps


def misheard(text: str, words: list[str], rate: float, rng: random.Random) -> str:
    """`text` with about `rate` of its words changed: half swapped for a word of `words`, a quarter
    dropped, a quarter followed by an extra word. Never empty."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < rate / 2:
            out.append(rng.choice(words))
        elif roll < 3 * rate / 4:
            continue
        else:
            out.append(word)
            if roll < rate:
                out.append(rng.choice(words))
    return " ".join(out) or text


class CopyPromptModel(nn.Module):
    def __init__(self, llm: FrozenLLM, form: TranscriptForm, prompt_length: int, learn_blank: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        self.llm, self.form = llm, form
        # start from real token embeddings, which lie where the LLM expects its input
        table = llm.model.embed.weight
        picks = torch.randint(0, table.shape[0], (prompt_length,), generator=torch.Generator().manual_seed(seed))
        self.prompt = nn.Parameter(table[picks].detach().float().clone())
        self.blank = nn.Parameter(torch.zeros(table.shape[1])) if learn_blank else None

    def heard(self, ids: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """[n] token ids and [n + 2] blank counts (`blank_gaps`) -> the span the LLM is to copy from."""
        embeds = self.llm.embed(ids[None])[0].float()
        blank = self.blank if self.blank is not None else embeds.new_zeros(embeds.shape[1])
        rows = torch.cat([embeds, blank[None]])
        n = ids.numel()
        index = [n] * int(gaps[0])
        for i in range(n):
            index += [i] + [n] * int(gaps[i + 1])
        index += [n] * int(gaps[n + 1])
        return rows[torch.tensor(index, device=rows.device)]

    def forward(self, heard_ids: list[torch.Tensor], gaps: list[torch.Tensor], targets: list[torch.Tensor]):
        heard = [self.heard(ids, g) for ids, g in zip(heard_ids, gaps)]
        packed = self.form.rows(self.llm, self.prompt, heard, targets)
        device = self.prompt.device
        hidden = self.llm(packed.embeds, packed.attention_mask.to(device))
        loss, accuracy = next_token_loss(hidden, packed.labels.to(device), self.llm.logits)
        return loss, {"token_accuracy": accuracy}

    def copy(self, text: str, gaps: torch.Tensor) -> str:
        """What the LLM writes back for `text` (greedy), heard with `gaps` blanks (`blank_gaps`)."""
        ids = torch.tensor(self.llm.tokenizer.encode(text, add_special_tokens=False), device=self.prompt.device)
        return self.form.read(self.llm, self.prompt, self.heard(ids, gaps))


def copy_texts(settings: CopyPromptSettings) -> list[str]:
    """The texts file read and normalised as the corpus builder reads one, else the corpus mix."""
    from freeze_omni.data.texts import default_texts, read_text_files

    items = read_text_files([Path(settings.texts_file)]) if settings.texts_file else default_texts(settings.seed)
    return [item.text for item in items]


class CopyPromptStage:
    def __init__(self, settings: CopyPromptSettings, llm: FrozenLLM | None = None) -> None:
        llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
        form = TranscriptForm(llm, settings.instruction, settings.answer_lead, settings.answer_close)
        self.module = CopyPromptModel(llm, form, settings.prompt_length, settings.learn_blank, settings.seed)
        self.settings = settings
        texts = copy_texts(settings)
        self.train_texts = [t for t in texts if text_split(t) == "train"]
        self.dev_texts = evenly_spaced([t for t in texts if text_split(t) == "dev"], settings.eval_texts)
        self.words = sorted({w for t in self.train_texts for w in t.split()})
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
        seed = hash(tuple(spec)) % 2 ** 31
        texts = [self.train_texts[i] for i in spec]
        if self.settings.word_noise:
            rng = random.Random(seed)
            texts = [misheard(t, self.words, self.settings.word_noise, rng) for t in texts]
        ids = [llm.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        generator = torch.Generator().manual_seed(seed)
        return {"heard_ids": [torch.tensor(i, device=device) for i in ids],
                "gaps": [blank_gaps(len(i), self.settings.blank_frames, generator) for i in ids],
                "targets": [torch.tensor(form.target_ids(llm, t), device=device) for t in texts]}

    def dev_gaps(self, text: str, index: int) -> torch.Tensor:
        """The blanks a held-out text is heard with: the same at every evaluation."""
        n = len(self.module.llm.tokenizer.encode(text, add_special_tokens=False))
        return blank_gaps(n, self.settings.blank_frames, torch.Generator().manual_seed(index))

    def evaluate(self, module: CopyPromptModel) -> dict[str, float]:
        copies = [module.copy(text, self.dev_gaps(text, i)) for i, text in enumerate(self.dev_texts)]
        exact = sum(c == t for c, t in zip(copies, self.dev_texts)) / len(self.dev_texts)
        return {"exact": exact, "wer": error_rates(self.dev_texts, copies).wer}


def trained_prompt(path: str | Path, expected: CopyPromptSettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt and learnt blank (None if zeros) of a copy-prompt checkpoint, refused unless it was
    trained for the same LLM, instruction, lead and closing text as `expected` (stage 2's)."""
    path = Path(path)
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such copy-prompt checkpoint (run `freeze-omni train copy-prompt` first)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    trained = CopyPromptSettings.from_dict(checkpoint["config"]["stage"])
    if trained.form_key() != expected.form_key():
        raise FreezeOmniError(f"{path}: the prompt was trained for (llm, instruction, lead, close) = "
                              f"{trained.form_key()}, not {expected.form_key()}")
    return checkpoint["model"]["prompt"], checkpoint["model"].get("blank")
