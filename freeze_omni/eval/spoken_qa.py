"""Spoken QA: does the frozen LLM answer a spoken question as well as the same question typed?

Both answers come from the same LLM, system prompt and greedy decoding with the same length
limit. The spoken answer is whatever the turn engine says after hearing the recording (so a
missed end of turn counts as a wrong answer, as it would for a user). An answer is correct when
any of the item's regexes is found in the lowercased answer text (REPORTS.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from freeze_omni.audio.io import read_audio
from freeze_omni.dialogue.replay import replay
from freeze_omni.dialogue.turn import TurnEngine
from freeze_omni.errors import FreezeOmniError
from freeze_omni.llm.greedy import greedy_answers, typed_request


@dataclass(frozen=True)
class QAItem:
    audio: Path
    question: str
    answers: tuple[str, ...]  # regexes over the lowercased answer


def read_qa_set(path: Path) -> list[QAItem]:
    """A spoken QA set (JSONL: audio, question, answers); every problem names its line."""
    if not path.is_file():
        raise FreezeOmniError(f"{path}: no such QA set")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FreezeOmniError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not {"audio", "question", "answers"} <= set(record):
            raise FreezeOmniError(f"{where}: expected an object with 'audio', 'question' and 'answers'")
        answers = record["answers"]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise FreezeOmniError(f"{where}: 'answers' must be a non-empty list of regex strings")
        for pattern in answers:
            try:
                re.compile(pattern)
            except re.error as err:
                raise FreezeOmniError(f"{where}: answer pattern {pattern!r} is not a valid regex ({err})") from None
        items.append(QAItem((path.parent / record["audio"]).resolve(), record["question"], tuple(answers)))
    if not items:
        raise FreezeOmniError(f"{path}: QA set holds no items")
    return items


def corpus_qa_set(manifest: Path, out: Path, limit: int = 100) -> Path:
    """Write a QA set from a corpus manifest's questions that carry reference answers (quiz items):
    each reference answer, escaped and lowercased, is one pattern."""
    lines = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "question" and record.get("answers"):
            audio = (manifest.parent / record["audio"]).resolve()
            patterns = [re.escape(a.lower()) for a in record["answers"]]
            lines.append(json.dumps({"audio": str(audio), "question": record["text"], "answers": patterns}))
        if len(lines) >= limit:
            break
    if not lines:
        raise FreezeOmniError(f"{manifest}: no questions with reference answers")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def is_correct(answer: str, patterns: tuple[str, ...]) -> bool:
    text = answer.lower()
    return any(re.search(p, text) for p in patterns)


def evaluate_spoken_qa(engine: TurnEngine, items: list[QAItem], max_tokens: int, log=print) -> dict:
    """`engine` must be configured with `max_answer_tokens=max_tokens` and greedy sampling."""
    llm, prompt = engine.llm, engine.config.system_prompt
    typed = greedy_answers(llm, [typed_request(llm, prompt, item.question) for item in items], max_tokens)
    rows = []
    for number, (item, text_answer) in enumerate(zip(items, typed), start=1):
        turns = replay(engine, read_audio(item.audio))
        spoken = turns[0].answer if turns else ""
        typed_text = llm.tokenizer.decode(text_answer.token_ids).strip()
        rows.append({"question": item.question, "typed_answer": typed_text, "spoken_answer": spoken,
                     "text_correct": is_correct(typed_text, item.answers),
                     "speech_correct": is_correct(spoken, item.answers), "answered": bool(turns),
                     "same_answer": spoken.strip() == typed_text})
        log(f"[{number}/{len(items)}] {item.question!r}: typed {typed_text[:60]!r} | spoken {spoken[:60]!r}")
    n = len(rows)
    speech = sum(r["speech_correct"] for r in rows) / n
    text = sum(r["text_correct"] for r in rows) / n
    return {"speech_accuracy": speech, "text_accuracy": text, "ratio": speech / text if text else float("nan"),
            "n": n, "answered_rate": sum(r["answered"] for r in rows) / n,
            "same_answer_rate": sum(r["same_answer"] for r in rows) / n, "items": rows}
