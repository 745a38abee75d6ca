"""The frozen LLM's own answers as the prefix decoder sees them in a dialogue: phrases with the
hidden state of every answer token, cut exactly as the turn engine cuts them.

`answer_phrases` lets the LLM answer a question (greedy, the dialogue's system prompt);
`read_as_answer` makes it read a given text as its answer (teacher forcing), for measuring
the prefix decoder on fixed held-out sentences.
"""

from __future__ import annotations

import torch

from freeze_omni.dialogue.phrases import PhraseRule, phrase_cut
from freeze_omni.dialogue.speaker import Phrase
from freeze_omni.dialogue.turn import DEFAULT_SYSTEM_PROMPT
from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.greedy import typed_request


def cut_phrases(llm: FrozenLLM, tokens: list[int], hidden: list[torch.Tensor],
                rule: PhraseRule = PhraseRule()) -> list[Phrase]:
    """Answer tokens and their hidden states -> phrases, as `TurnEngine` hands them to the speaker
    (`phrase_cut`); phrases of only spaces are left out, as they say nothing."""
    phrases: list[Phrase] = []
    start, said, handed = 0, "", 0

    def decode(ids: list[int]) -> str:
        return llm.tokenizer.decode(ids, skip_special_tokens=True)

    def hand_over(end: int) -> None:
        nonlocal start, said, handed
        text = decode(tokens[:end])[len(said):]
        if text.strip():
            phrases.append(Phrase(text=text, token_ids=tokens[start:end],
                                  hidden=torch.stack(hidden[start:end]).float(), index=handed))
        said, start, handed = said + text, end, handed + 1

    for end in range(1, len(tokens) + 1):
        text = decode(tokens[:end])[len(said):]
        if text.endswith("\ufffd"):  # a character split across tokens
            continue
        cut = phrase_cut(text, end - start, handed == 0, decode(tokens[end - 1:end]), rule)
        if cut is not None and end - cut > start:
            hand_over(end - cut)
    if start < len(tokens):
        hand_over(len(tokens))
    return phrases


@torch.no_grad()
def answer_phrases(llm: FrozenLLM, question: str, max_tokens: int = 48,
                   system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[Phrase]:
    tokens, hidden = [], []
    for token, state in llm.generate(typed_request(llm, system_prompt, question), llm.new_cache(), max_new_tokens=max_tokens):
        if token in llm.stop_ids:
            break
        tokens.append(token)
        hidden.append(state)
    return cut_phrases(llm, tokens, hidden)


@torch.no_grad()
def read_as_answer(llm: FrozenLLM, text: str, question: str = "Please say something.",
                   system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> Phrase:
    """`text` as one phrase, with the hidden states the LLM has while reading it as its answer."""
    prompt = typed_request(llm, system_prompt, question)
    tokens = llm.tokenizer.encode(text, add_special_tokens=False)
    hidden = llm(llm.embed_ids(prompt + tokens))[0, len(prompt):]
    return Phrase(text=text, token_ids=tokens, hidden=hidden.float(), index=0)
