import pytest
import torch

from freeze_omni.llm.state_head import DialogueState, StateHead

pytestmark = pytest.mark.usefixtures("one_thread")


def test_states_keep_the_published_numbering():
    assert [int(s) for s in DialogueState] == [0, 1, 2]
    assert [s.name for s in DialogueState] == ["LISTEN", "ANSWER", "IGNORE"]


def test_head_is_sized_by_the_llm_and_reads_any_dtype():
    head = StateHead(48)
    assert head.proj.in_features == 48 and head.proj.out_features == 3
    hidden = torch.randn(2, 5, 48, dtype=torch.bfloat16)
    logits = head(hidden)
    assert logits.shape == (2, 5, 3) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, head(hidden.float()))


@pytest.mark.parametrize("state", list(DialogueState))
def test_decide_follows_the_most_likely_state(state):
    head = StateHead(16)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.nn.functional.one_hot(torch.tensor(state.value), 3) * 10.0)
    decided, probabilities = head.decide(torch.randn(1, 16))
    assert decided is state
    assert probabilities[state] > 0.99 and sum(probabilities) == pytest.approx(1.0)


def test_decide_reads_the_hidden_state():
    head = StateHead(4)
    with torch.no_grad():
        head.proj.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [5, 0, 0, 0], [0, 5, 0, 0]]))
        head.proj.bias.zero_()
    assert head.decide(torch.tensor([1.0, 0, 0, 0]))[0] is DialogueState.ANSWER
    assert head.decide(torch.tensor([0.0, 1, 0, 0]))[0] is DialogueState.IGNORE
    assert head.decide(torch.tensor([-1.0, -1, 0, 0]))[0] is DialogueState.LISTEN


def test_an_answer_below_the_threshold_keeps_listening():
    head = StateHead(4)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # p(answer) = e / (e + 2) = 0.58
    assert head.decide(torch.zeros(4), answer_threshold=0.5)[0] is DialogueState.ANSWER
    assert head.decide(torch.zeros(4), answer_threshold=0.6)[0] is DialogueState.LISTEN
