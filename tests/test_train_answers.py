"""Self-distilled answers: batched greedy generation equals one-by-one generation; the book resumes."""

import pytest

from conftest import tiny_hf_model
from freeze_omni.llm import FrozenLLM
from freeze_omni.llm.greedy import greedy_answers, typed_request
from freeze_omni.train.answers import AnswerBook

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["hello world", "what is the capital of france", "seven", "one two three", "the answer is paris"]


@pytest.fixture(scope="module")
def llm():
    return FrozenLLM.from_hf_model(*tiny_hf_model("qwen2"))


def test_batched_answers_equal_one_by_one(llm):
    prompts = [typed_request(llm, "be brief", t) for t in TEXTS] * 2  # equal lengths share a batch
    answers = greedy_answers(llm, prompts, max_tokens=12, batch_size=3)
    for prompt, answer in zip(prompts, answers):
        alone = [t for t, _ in llm.generate(prompt, llm.new_cache(), max_new_tokens=12)]
        finished = bool(alone) and alone[-1] in llm.stop_ids
        assert answer.token_ids == (alone[:-1] if finished else alone)
        assert answer.finished == finished
    assert any(len(a.token_ids) > 0 for a in answers)


def test_book_answers_each_text_once_and_resumes(llm, tmp_path, monkeypatch):
    book = AnswerBook(llm, "be brief", 8, tmp_path)
    book.fill(TEXTS[:3], log=lambda *_: None)
    assert all(t in book for t in TEXTS[:3]) and TEXTS[3] not in book
    calls = []
    monkeypatch.setattr("freeze_omni.train.answers.greedy_answers",
                        lambda llm, prompts, *a: calls.append(len(prompts)) or greedy_answers(llm, prompts, *a))
    again = AnswerBook(llm, "be brief", 8, tmp_path)
    again.fill(TEXTS, log=lambda *_: None)
    assert calls == [2]  # only the two new texts
    assert again[TEXTS[0]] == book[TEXTS[0]]
    other = AnswerBook(llm, "another prompt", 8, tmp_path)
    assert other.path != book.path and TEXTS[0] not in other
