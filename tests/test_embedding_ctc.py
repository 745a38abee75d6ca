import torch
import torch.nn.functional as F

from freeze_omni.train.embedding_ctc import blank_direction, embedding_ctc_loss


def test_frames_on_the_right_embeddings_in_order_cost_less_than_other_frames():
    torch.manual_seed(0)
    embedding = F.normalize(torch.randn(50, 16), dim=-1) + 3.0  # a large common component, as real tables have
    targets = [torch.tensor([3, 7, 7, 12]), torch.tensor([5, 9])]
    blank = embedding.mean(0) + blank_direction(16)

    def frames(ids: list[int]) -> torch.Tensor:
        return torch.stack([blank if i < 0 else embedding[i] for i in ids])

    right = [frames([3, -1, 7, -1, 7, 12, -1]), frames([-1, 5, 9, -1])]
    shuffled = [frames([12, -1, 7, -1, 3, 7, -1]), frames([-1, 9, 5, -1])]
    noise = [torch.randn(7, 16), torch.randn(4, 16)]
    losses = [float(embedding_ctc_loss(s, targets, embedding)) for s in (right, shuffled, noise)]
    assert losses[0] < 0.5 < losses[1] and losses[0] < losses[2]


def test_gradients_reach_the_frames_and_impossible_rows_do_not_blow_up():
    embedding = torch.randn(20, 8)
    speech = [torch.randn(2, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)]
    targets = [torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6])]  # the first row is too short for its tokens
    loss = embedding_ctc_loss(speech, targets, embedding)
    loss.backward()
    assert torch.isfinite(loss) and speech[1].grad.abs().sum() > 0
