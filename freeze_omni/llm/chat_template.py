"""The backbone's own chat template, cut into token-id pieces around the parts we insert.

Speech embeddings go where the user's text would be, so the turn engine needs the template's
pieces as ids: system prefix/suffix, user turn start, user turn end + assistant start, assistant
end. They are found by rendering the tokenizer's template around sentinel strings, which works for
any Hugging Face chat template (ChatML, Llama 3, ...) without knowing its syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from freeze_omni.errors import FreezeOmniError

_SYS, _USER, _ANSWER, _USER2 = "\u2402SYS\u2402", "\u2402USR\u2402", "\u2402ANS\u2402", "\u2402US2\u2402"


@dataclass(frozen=True)
class ChatTemplate:
    system_prefix: list[int]
    system_suffix: list[int]
    user_start: list[int]
    user_end_assistant_start: list[int]
    assistant_end: list[int]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "ChatTemplate":
        if not getattr(tokenizer, "chat_template", None):
            raise FreezeOmniError("the LLM's tokenizer has no chat template; use an instruction-tuned model")

        def render(messages, generation_prompt: bool) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

        sys_msg, user, answer = ({"role": "system", "content": _SYS}, {"role": "user", "content": _USER},
                                 {"role": "assistant", "content": _ANSWER})
        one_turn = render([sys_msg, user], True)
        answered = render([sys_msg, user, answer], False)
        two_turns = render([sys_msg, user, answer, {"role": "user", "content": _USER2}], True)
        prefix, rest = _split(one_turn, _SYS)
        between, user_end = _split(rest, _USER)
        assistant_end = _split(answered, _ANSWER)[1]
        after_answer = _split(_split(two_turns, _ANSWER)[1], _USER2)[0]
        user_start = after_answer[len(assistant_end):] if after_answer.startswith(assistant_end) else after_answer
        system_suffix = between[: len(between) - len(user_start)] if between.endswith(user_start) else between

        def ids(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False) if text else []

        return cls(ids(prefix), ids(system_suffix), ids(user_start), ids(user_end), ids(assistant_end))

    def system(self, tokenizer, text: str) -> list[int]:
        return self.system_prefix + tokenizer.encode(text, add_special_tokens=False) + self.system_suffix

    def user_turn(self, tokenizer, text: str) -> list[int]:
        """A typed user turn up to the assistant's first token (the text baseline of spoken QA)."""
        return self.user_start + tokenizer.encode(text, add_special_tokens=False) + self.user_end_assistant_start


def _split(text: str, sentinel: str) -> tuple[str, str]:
    if text.count(sentinel) != 1:
        raise FreezeOmniError("the LLM's chat template drops or repeats message contents; cannot split it")
    before, after = text.split(sentinel)
    return before, after
