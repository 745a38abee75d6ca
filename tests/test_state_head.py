import pytest
import torch

from freeze_omni.llm.state_head import DialogueState, StateHead, acoustic_context, chunk_means, decision

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


def test_chunk_means_average_whole_chunks_only():
    frames = torch.arange(12.0).reshape(6, 2)
    torch.testing.assert_close(chunk_means(frames, 3), torch.tensor([[2.0, 3.0], [8.0, 9.0]]))
    with pytest.raises(ValueError, match="whole chunks"):
        chunk_means(frames[:5], 3)


def test_acoustic_rows_hold_each_chunk_then_the_ones_before_it():
    means = torch.tensor([[1.0], [2.0], [3.0]])
    rows, history = acoustic_context(means, torch.zeros(2, 1))
    torch.testing.assert_close(rows, torch.tensor([[1.0, 0, 0], [2, 1, 0], [3, 2, 1]]))
    torch.testing.assert_close(history, torch.tensor([[2.0], [3.0]]))
    rows, history = acoustic_context(means, torch.zeros(0, 1))  # one chunk: its own mean only
    torch.testing.assert_close(rows, means)
    assert history.shape == (0, 1)


@pytest.mark.parametrize("chunks", [1, 3])
def test_acoustic_rows_streamed_equal_offline(chunks):
    means = torch.randn(9, 5)
    head = StateHead(8, 5, chunks)
    offline, _ = acoustic_context(means, head.initial_history())
    history, streamed = head.initial_history(), []
    for piece in torch.split(means, [1, 3, 1, 4]):
        rows, history = acoustic_context(piece, history)
        streamed.append(rows)
    torch.testing.assert_close(torch.cat(streamed), offline)


def test_an_acoustic_head_starts_where_the_plain_head_is_and_needs_its_input():
    plain, acoustic = StateHead(16), StateHead(16, 4, 3)
    acoustic.load_state_dict(plain.state_dict(), strict=False)
    hidden, rows = torch.randn(5, 16), torch.randn(5, 12)
    torch.testing.assert_close(acoustic(hidden, rows), plain(hidden))  # the acoustic map starts at zero
    with torch.no_grad():
        acoustic.acoustic.weight.normal_()
    assert not torch.allclose(acoustic(hidden, rows), plain(hidden))
    assert acoustic.decide(hidden[0], acoustic=rows[0])[1] != plain.decide(hidden[0])[1]
    with pytest.raises(ValueError, match="also reads the encoder"):
        acoustic(hidden)
    with pytest.raises(ValueError, match="no acoustic input"):
        plain(hidden, rows)
    with pytest.raises(ValueError):
        StateHead(16, 4, 0)


def test_each_decision_needs_its_own_threshold():
    answer, ignore = (0.1, 0.6, 0.3), (0.1, 0.3, 0.6)
    assert decision(answer) is DialogueState.ANSWER and decision(ignore) is DialogueState.IGNORE
    assert decision(answer, answer_threshold=0.7) is DialogueState.LISTEN
    assert decision(answer, ignore_threshold=0.7) is DialogueState.ANSWER
    assert decision(ignore, ignore_threshold=0.7) is DialogueState.LISTEN
    assert decision(ignore, answer_threshold=0.7) is DialogueState.IGNORE
    assert decision((0.5, 0.3, 0.2), 0.9, 0.9) is DialogueState.LISTEN
