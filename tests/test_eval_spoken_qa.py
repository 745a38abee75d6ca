"""Spoken QA evaluation: the QA set format, answer matching, and a run through a tiny engine."""

import json

import pytest

from dialogue_support import ANSWER, conversation, forced_head, make_engine, silence
from freeze_omni.audio.io import write_wav
from freeze_omni.errors import FreezeOmniError
from freeze_omni.eval.spoken_qa import corpus_qa_set, evaluate_spoken_qa, is_correct, read_qa_set
from freeze_omni.llm import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_answers_match_by_regex_on_lowercased_text():
    assert is_correct("The capital is PARIS.", ("paris",))
    assert is_correct("It is 42", (r"\b42\b", "forty[- ]two"))
    assert not is_correct("It is 420", (r"\b42\b",))


@pytest.mark.parametrize("line, message", [
    ("not json", "not valid JSON"),
    ('{"audio": "a.wav", "question": "q"}', "'answers'"),
    ('{"audio": "a.wav", "question": "q", "answers": []}', "non-empty list"),
    ('{"audio": "a.wav", "question": "q", "answers": ["(unclosed"]}', "not a valid regex"),
])
def test_bad_qa_sets_name_the_line(tmp_path, line, message):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"audio": "a.wav", "question": "q", "answers": ["x"]}\n' + line + "\n")
    with pytest.raises(FreezeOmniError, match=rf"qa.jsonl:2: .*{message}"):
        read_qa_set(path)


def test_corpus_questions_with_reference_answers_become_a_qa_set(tmp_path):
    manifest = tmp_path / "test.jsonl"
    records = [{"audio": "a.wav", "text": "What is the capital of Peru?", "kind": "question", "answers": ["Lima"]},
               {"audio": "b.wav", "text": "Tell me a joke.", "kind": "statement"},
               {"audio": "c.wav", "text": "What is 2+2?", "kind": "question", "answers": ["4 (four)"]}]
    manifest.write_text("\n".join(json.dumps(r) for r in records))
    items = read_qa_set(corpus_qa_set(manifest, tmp_path / "qa.jsonl"))
    assert [i.question for i in items] == ["What is the capital of Peru?", "What is 2+2?"]
    assert is_correct("it is 4 (four).", items[1].answers) and not is_correct("it is four", items[1].answers)
    assert items[0].audio == (tmp_path / "a.wav").resolve()


def test_spoken_and_typed_answers_come_from_the_same_llm(llm, speech_input, detector, speech, tmp_path):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), max_answer_tokens=6,
                         sampling=SamplingConfig())
    wav = tmp_path / "q.wav"
    write_wav(wav, conversation(silence(0.5), speech["q1"], silence(0.5)))
    (tmp_path / "qa.jsonl").write_text(json.dumps({"audio": "q.wav", "question": "What is the capital of France?",
                                                   "answers": ["."]}) + "\n")
    result = evaluate_spoken_qa(engine, read_qa_set(tmp_path / "qa.jsonl"), 6, log=lambda *_: None)
    (item,) = result["items"]
    assert result["n"] == 1 and item["answered"] and item["typed_answer"] and item["spoken_answer"]
    assert result["text_accuracy"] == 1.0 and result["speech_accuracy"] == 1.0 and result["ratio"] == 1.0
