"""Input stage 3: spoken conversations with the frozen LLM, and the chunk-level state head.

Rows are laid out exactly as the turn engine builds a conversation's KV:
    [system prompt] then per user turn: [user start | prompt embeddings | speech, chunk by chunk]
    and for a request: [user end, assistant start | the LLM's own answer | assistant end]
The answers are the frozen LLM's greedy answers to the same requests typed (self-distillation),
so speech input keeps the LLM's own behaviour. Each conversation holds 1..3 requests (later turns
see earlier ones) and may end with a turn the assistant must ignore (`freeze_omni.train.turns`).
Two losses: next-token on the answers, and the state head's cross-entropy at the last position of
every labelled 160 ms chunk. The LLM never changes; the adapter, the prompt embeddings, the state
head and (optionally) the encoder learn. A speech input that already reads as the LLM's own tokens
(a token readout from stage 2) can keep its adapter (`train_adapter` false) and learn only a
prompt for answering; with the prompt kept too, only the state head learns, from hidden states
the LLM computes without a backward pass.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from freeze_omni.audio.io import read_audio
from freeze_omni.dialogue.turn import DEFAULT_SYSTEM_PROMPT
from freeze_omni.encoder import UNLIMITED
from freeze_omni.encoder.frontend import featurizer
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.state_head import DialogueState, StateHead, acoustic_context, chunk_means
from freeze_omni.paths import data_dir
from freeze_omni.speech_input import SpeechInput
from freeze_omni.train.answers import AnswerBook
from freeze_omni.train.config import StageSettings
from freeze_omni.train.data import pad_features
from freeze_omni.train.embedding_ctc import embedding_ctc_loss
from freeze_omni.train.sequences import IGNORE, RowBuilder, next_token_loss, pad_rows
from freeze_omni.train.stages.encoder_ctc import build_encoder, chunk_frames_160ms
from freeze_omni.train.turns import (
    CHUNK_SECONDS, IGNORE_KINDS, REQUEST_KINDS, TurnPlan, TurnSettings, Utterance, chunk_labels,
    plan_conversations, read_turn_utterances, turn_audio,
)

EVAL_TAIL_SECONDS = 1.2  # audio heard after the end of an evaluated turn (the engine's end timeout)


@dataclass
class EncoderQASettings(StageSettings):
    corpus: str = ""                  # folder with train.jsonl / dev.jsonl; "" = the default corpus
    speech_checkpoint: str = ""       # last.pt of encoder-llm; "" = an untrained speech input
    init: str = "whisper-tiny.en"     # encoder architecture (must match the checkpoint)
    llm: str = ""                     # HF directory or .gguf; "" = the default backbone
    llm_dtype: str = "bfloat16"
    prompt_length: int = 4
    adapter_norm: bool = False        # must match the stage-2 checkpoint (adapter.py)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_answer_tokens: int = 32
    conversations_per_batch: int = 6
    max_turns: int = 3
    ignore_share: float = 0.4
    decide_after: float = 0.24        # seconds of quiet after a turn's sound before its decision chunk
    train_encoder: bool = False
    train_adapter: bool = True
    train_prompt: bool = True         # with neither adapter, prompt nor encoder, only the state head
                                      # learns and no gradient crosses the LLM
    state_weight: float = 1.0
    state_acoustic_chunks: int = 0    # > 0: the state head also reads the mean encoder frame of this
                                      # many last chunks (`llm/state_head.py`)
    state_head_init: str = ""         # a bundle's state_head.safetensors to start the head from
    embedding_ctc_weight: float = 0.0  # keeps request speech near the LLM's embeddings of its words (stage 2's loss)
    request_texts: int = 0            # distinct request texts to learn from (a seeded sample); 0 = all
    eval_turns: int = 40              # held-out requests and as many turns to ignore
    answers_dir: str = ""             # where typed answers are kept; "" = $FREEZE_OMNI_DATA/answers
    train_limit: int = 0              # use only the first N training utterances (0 = all)


@dataclass(frozen=True)
class TurnBatch:
    """What one conversation needs besides its speech: per turn, chunk labels and the answer."""

    labels: list[int]
    answer: list[int] | None  # answer ids with the learnt end token; None for an ignored turn
    transcript: list[int] | None = None  # LLM ids of a request's words (for the embedding CTC loss)


class SpokenDialogueModel(nn.Module):
    def __init__(self, speech_input: SpeechInput, llm: FrozenLLM, state_head: StateHead, system_prompt: str) -> None:
        super().__init__()
        self.speech_input, self.llm, self.state_head = speech_input, llm, state_head
        template, tokenizer = llm.template, llm.tokenizer
        self.system_ids = torch.tensor(template.system(tokenizer, system_prompt))
        self.user_start = torch.tensor(template.user_start)
        self.answer_start = torch.tensor(template.user_end_assistant_start)
        self.assistant_end = template.assistant_end or [tokenizer.eos_token_id]

    def speech(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each turn's embeddings as the engine computes them (160 ms chunks, unlimited left context),
        and each turn's acoustic rows [n_chunks, k * d] for an acoustic state head (none for a plain one)."""
        chunk = chunk_frames_160ms(self.speech_input.encoder)
        frames, out = self.speech_input.encode_and_adapt(feats, lengths, chunk, UNLIMITED)
        embeds = [out.embeds[i, : int(n)] for i, n in enumerate(out.lengths)]
        if not self.state_head.acoustic_chunks:
            return embeds, []
        history = self.state_head.initial_history(feats.device)
        acoustic = [acoustic_context(chunk_means(frames.frames[i, : int(n)].float(), chunk), history)[0]
                    for i, n in enumerate(frames.lengths)]
        return embeds, acoustic

    def state_logits(self, hidden: torch.Tensor, states: torch.Tensor, acoustic: list[torch.Tensor],
                     turns: list[TurnBatch]) -> torch.Tensor:
        """The head's logits at every labelled chunk, in row order (the order of `states`)."""
        positions = (states != IGNORE).to(hidden.device)
        rows = None
        if self.state_head.acoustic_chunks:
            rows = torch.cat([a[torch.tensor(t.labels, device=a.device) != IGNORE] for a, t in zip(acoustic, turns)])
        return self.state_head(hidden[positions], rows)

    def rows(self, speech: list[torch.Tensor], conversations: list[list[TurnBatch]]) -> list[RowBuilder]:
        embed, rows, turn = self.llm.embed, [], 0
        for conversation in conversations:
            row = RowBuilder()
            row.add_tokens(self.system_ids, embed)
            for item in conversation:
                row.add_tokens(self.user_start, embed)
                row.add_embeds(self.speech_input.prompt)
                row.add_embeds(speech[turn], state_positions(speech[turn].shape[0], item.labels))
                turn += 1
                if item.answer is not None:
                    row.add_tokens(self.answer_start, embed)
                    row.add_tokens(torch.tensor(item.answer), embed, learn=True)
                    if len(self.assistant_end) > 1:
                        row.add_tokens(torch.tensor(self.assistant_end[1:]), embed)
            rows.append(row)
        return rows

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, conversations: list[list[TurnBatch]],
                state_weight: float = 1.0, embedding_ctc_weight: float = 0.0):
        speech, acoustic = self.speech(feats, lengths)
        packed = pad_rows(self.rows(speech, conversations), torch.float32)
        hidden = self.llm(packed.embeds, packed.attention_mask.to(feats.device))
        answer_loss, accuracy = next_token_loss(hidden, packed.labels.to(feats.device), self.llm.logits)
        state_logits = self.state_logits(hidden, packed.states, acoustic, [i for c in conversations for i in c])
        targets = packed.states[packed.states != IGNORE].to(feats.device)
        state_loss = nn.functional.cross_entropy(state_logits.float(), targets)
        state_accuracy = (state_logits.argmax(-1) == targets).float().mean().item()
        metrics = {"answer_loss": answer_loss.item(), "answer_token_accuracy": accuracy,
                   "state_loss": state_loss.item(), "state_accuracy": state_accuracy}
        loss = answer_loss + state_weight * state_loss
        requests = [(s, item.transcript) for s, item in zip(speech, (i for c in conversations for i in c))
                    if item.transcript]
        if embedding_ctc_weight and requests:
            ctc = embedding_ctc_loss([s for s, _ in requests], [torch.tensor(t) for _, t in requests],
                                     self.llm.model.embed.weight)
            loss = loss + embedding_ctc_weight * ctc
            metrics["embedding_ctc"] = ctc.item()
        return loss, metrics


def state_positions(n_embeds: int, labels: list[int]) -> list[int]:
    """Chunk labels -> a label per speech position: each chunk's label sits on its last position."""
    per_chunk = n_embeds // len(labels)
    if per_chunk * len(labels) != n_embeds:
        raise ValueError(f"{n_embeds} speech positions do not split into {len(labels)} chunks")
    states = [IGNORE] * n_embeds
    for k, label in enumerate(labels):
        states[(k + 1) * per_chunk - 1] = label
    return states


def load_speech_input(settings: EncoderQASettings, llm: FrozenLLM) -> SpeechInput:
    """Encoder, adapter and prompt embeddings as input stage 2 left them (a token readout included)."""
    state, vocabulary = {}, 0
    if settings.speech_checkpoint:
        path = Path(settings.speech_checkpoint)
        if not path.is_file():
            raise FreezeOmniError(f"{path}: no such checkpoint (run `freeze-omni train encoder-llm` first)")
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        if ("speech_input.adapter.norm.weight" in state) != settings.adapter_norm:
            raise FreezeOmniError(f"{path} was trained with adapter_norm = {str(not settings.adapter_norm).lower()}; "
                                  f"set the same here")
        token_ids = state.get("speech_input.adapter.readout.token_ids")
        vocabulary = 0 if token_ids is None else token_ids.numel()
    speech_input = SpeechInput(build_encoder(settings.init), llm.hidden_size, settings.prompt_length,
                               settings.adapter_norm, vocabulary)
    if state:
        speech_input.load_state_dict({k.removeprefix("speech_input."): v for k, v in state.items()
                                      if k.startswith("speech_input.")})
    speech_input.attach_llm(llm.model.embed.weight)
    speech_input.encoder.requires_grad_(settings.train_encoder)
    speech_input.adapter.requires_grad_(settings.train_adapter)
    speech_input.prompt.requires_grad_(settings.train_prompt)
    return speech_input


def export_bundle(checkpoint: Path, model_dir: Path, answer_threshold: float = 0.0,
                  llm_weights: str = "") -> EncoderQASettings:
    """Write the model bundle `freeze-omni chat` and `serve` load (fp16) from a stage-3 checkpoint."""
    from freeze_omni.bundle import save_model

    if not checkpoint.is_file():
        raise FreezeOmniError(f"{checkpoint}: no such checkpoint (run `freeze-omni train encoder-qa` first)")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    settings = EncoderQASettings.from_dict(saved["config"]["stage"])
    model = build_model(settings)
    missing, unexpected = model.load_state_dict(saved["model"], strict=False)
    if unexpected or any(not k.startswith("llm.") for k in missing):
        raise FreezeOmniError(f"{checkpoint} does not hold the whole stage-3 model it names (checkpoints "
                              f"written before they kept the frozen encoder cannot be exported safely)")
    save_model(model_dir, model.speech_input, model.state_head, settings.llm, settings.system_prompt, answer_threshold,
               llm_weights)
    return settings


def load_state_head(settings: EncoderQASettings, hidden_size: int, encoder_dim: int) -> StateHead:
    """A new head, or one that starts from a bundle's head (an acoustic part it lacks starts at zero)."""
    chunks = settings.state_acoustic_chunks
    head = StateHead(hidden_size, encoder_dim if chunks else 0, chunks)
    if settings.state_head_init:
        path = Path(settings.state_head_init)
        if not path.is_file():
            raise FreezeOmniError(f"{path}: no such state head file")
        try:
            missing, unexpected = head.load_state_dict(load_file(path), strict=False)
        except RuntimeError as error:  # a tensor of another shape
            raise FreezeOmniError(f"{path} is not a state head for this LLM: {error}") from None
        if unexpected or any(not k.startswith("acoustic.") for k in missing):
            raise FreezeOmniError(f"{path} is not a state head (missing {missing}, unexpected {unexpected})")
    return head


def build_model(settings: EncoderQASettings, llm: FrozenLLM | None = None) -> SpokenDialogueModel:
    llm = llm or FrozenLLM.load(settings.llm or None, dtype=getattr(torch, settings.llm_dtype))
    speech_input = load_speech_input(settings, llm)
    head = load_state_head(settings, llm.hidden_size, speech_input.encoder.config.dim)
    return SpokenDialogueModel(speech_input, llm, head, settings.system_prompt)


class EncoderQAStage:
    def __init__(self, settings: EncoderQASettings, llm: FrozenLLM | None = None) -> None:
        self.settings = settings
        self.module = build_model(settings, llm)
        self.featurize = featurizer(self.module.speech_input.encoder.config)
        self.turn_settings = TurnSettings(decide_after=settings.decide_after, max_turns=settings.max_turns,
                                          ignore_share=settings.ignore_share)
        corpus = Path(settings.corpus) if settings.corpus else data_dir() / "corpus" / "default"
        self.train_set = read_turn_utterances(corpus / "train.jsonl", settings.train_limit or None)
        self.dev_set = read_turn_utterances(corpus / "dev.jsonl")
        self.book = AnswerBook(self.module.llm, settings.system_prompt, settings.max_answer_tokens,
                               Path(settings.answers_dir) if settings.answers_dir else data_dir() / "answers")
        self.dev_requests, self.dev_ignored = self._dev_turns()
        texts = self._request_texts()
        self.book.fill(sorted(texts | {u.text for u in self.dev_requests}))
        self.requests = [i for i, u in enumerate(self.train_set) if u.kind in REQUEST_KINDS and u.text in texts]
        if not self.requests:
            raise FreezeOmniError(f"{corpus}/train.jsonl holds no requests (kinds {', '.join(REQUEST_KINDS)})")

    def _request_texts(self) -> set[str]:
        """The request texts to learn from: every one, or a seeded sample when answering them all
        with the LLM would cost too much (every spoken version of a chosen text is used)."""
        texts = sorted({u.text for u in self.train_set if u.kind in REQUEST_KINDS})
        if self.settings.request_texts and self.settings.request_texts < len(texts):
            texts = random.Random(0).sample(texts, self.settings.request_texts)
        return set(texts)

    def _dev_turns(self) -> tuple[list[Utterance], list[Utterance]]:
        rng = random.Random(0)
        requests = [u for u in self.dev_set if u.kind in REQUEST_KINDS]
        ignored = [u for u in self.dev_set if u.kind in IGNORE_KINDS]
        rng.shuffle(requests)
        rng.shuffle(ignored)
        n = self.settings.eval_turns
        return requests[:n], ignored[:n]

    def plan(self, epoch: int, seed: int) -> list[list[list[TurnPlan]]]:
        conversations = plan_conversations(self.train_set, self.requests, seed * 100_003 + epoch, self.turn_settings)
        size = self.settings.conversations_per_batch
        return [conversations[i:i + size] for i in range(0, len(conversations), size)]

    def answer_ids(self, text: str) -> list[int]:
        answer = self.book[text]
        return answer.token_ids + (self.module.assistant_end[:1] if answer.finished else [])

    def load(self, spec: list[list[TurnPlan]], device: torch.device) -> dict[str, Any]:
        feats, conversations = [], []
        for conversation in spec:
            items = []
            for turn in conversation:
                labels = chunk_labels(turn.end, turn.label, turn.extra, self.turn_settings)
                audio = read_audio(self.train_set[turn.utterance].audio) if turn.utterance >= 0 else None
                feats.append(self.featurize(turn_audio(turn, audio, len(labels))))
                answer, transcript = None, None
                if turn.sound == "request":
                    text = self.train_set[turn.utterance].text
                    answer, transcript = self.answer_ids(text), self.module.llm.tokenizer.encode(text, add_special_tokens=False)
                items.append(TurnBatch(labels, answer, transcript))
            conversations.append(items)
        batch, lengths = pad_features(feats)
        return {"feats": batch.to(device), "lengths": lengths.to(device), "conversations": conversations,
                "state_weight": self.settings.state_weight, "embedding_ctc_weight": self.settings.embedding_ctc_weight}

    @torch.no_grad()
    def evaluate(self, module: SpokenDialogueModel) -> dict[str, float]:
        """End-of-turn decisions on held-out turns heard to 1.2 s past their end (the engine's
        timeout), and how well the LLM continues its own typed answer after a spoken request
        accepted at the first chunk the training labels say it may be (teacher-forced)."""
        delays, early, missed, false_answers, accuracies = [], 0, 0, 0, []
        for utterance in self.dev_requests + self.dev_ignored:
            request = utterance.kind in REQUEST_KINDS
            turn = TurnPlan("request" if request else "ignore", -1, 0.5, utterance.speech_end, 0, 0)
            audio = read_audio(utterance.audio)
            n_chunks = math.ceil((turn.end + EVAL_TAIL_SECONDS) / CHUNK_SECONDS)
            decisions = self._decisions(module, turn_audio(turn, audio, n_chunks), n_chunks)
            first = next((k for k, d in enumerate(decisions) if d != DialogueState.LISTEN), None)
            decided = DialogueState(decisions[first]) if first is not None else None
            if not request:
                false_answers += decided == DialogueState.ANSWER
                continue
            if decided == DialogueState.ANSWER:
                delay = ((first + 1) * CHUNK_SECONDS - turn.end) * 1000
                early += delay < 0
                delays.append(delay)
            else:
                missed += 1
            labels = chunk_labels(turn.end, turn.label, 0, self.turn_settings)
            accuracies.append(self._answer_accuracy(module, turn_audio(turn, audio, len(labels)), labels,
                                                    self.answer_ids(utterance.text)))
        n_requests, n_ignored = max(1, len(self.dev_requests)), max(1, len(self.dev_ignored))
        return {"end_delay_ms_p50": median(delays) if delays else float("nan"),
                "early_answer_rate": early / n_requests, "missed_request_rate": missed / n_requests,
                "false_answer_rate": false_answers / n_ignored,
                "answer_token_accuracy": float(np.mean(accuracies)) if accuracies else float("nan")}

    def _forward_one(self, module: SpokenDialogueModel, audio: np.ndarray, item: TurnBatch):
        feats = torch.from_numpy(self.featurize(audio))[None]
        speech, acoustic = module.speech(feats, torch.tensor([feats.shape[1]]))
        packed = pad_rows(module.rows(speech, [[item]]), torch.float32)
        return packed, module.llm(packed.embeds, packed.attention_mask), acoustic

    def _decisions(self, module: SpokenDialogueModel, audio: np.ndarray, n_chunks: int) -> list[int]:
        item = TurnBatch([int(DialogueState.LISTEN)] * n_chunks, None)
        packed, hidden, acoustic = self._forward_one(module, audio, item)
        return module.state_logits(hidden, packed.states, acoustic, [item]).argmax(-1).tolist()

    def _answer_accuracy(self, module: SpokenDialogueModel, audio: np.ndarray, labels: list[int],
                         answer: list[int]) -> float:
        packed, hidden, _ = self._forward_one(module, audio, TurnBatch(labels, answer))
        return next_token_loss(hidden, packed.labels, module.llm.logits)[1]
