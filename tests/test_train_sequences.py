import torch

from freeze_omni.train.sequences import IGNORE, next_token_loss, pack_rows


def test_rows_are_packed_with_labels_on_the_targets_only():
    embed_table = torch.nn.Embedding(50, 4)
    prefix, suffix = torch.zeros(3, 4), torch.ones(2, 4)
    speech = [torch.full((5, 4), 2.0), torch.full((2, 4), 3.0)]
    targets = [torch.tensor([7, 8]), torch.tensor([9, 10, 11])]
    packed = pack_rows(prefix, speech, suffix, targets, embed_table)
    assert packed.embeds.shape == (2, 12, 4)
    assert packed.attention_mask.sum(1).tolist() == [12, 10]
    # Row 0: prefix 0-2, speech 3-7, suffix 8-9, targets 10-11; position 9 predicts 7, 10 predicts 8.
    assert packed.labels[0].tolist() == [IGNORE] * 9 + [7, 8, IGNORE]
    assert packed.labels[1].tolist() == [IGNORE] * 6 + [9, 10, 11] + [IGNORE] * 3
    torch.testing.assert_close(packed.embeds[1, 7:10], embed_table(torch.tensor([9, 10, 11])))
    assert torch.equal(packed.embeds[1, 3:5], speech[1])


def test_loss_only_counts_labelled_positions():
    head = torch.nn.Linear(4, 6, bias=False)
    hidden = torch.randn(1, 5, 4)
    labels = torch.tensor([[IGNORE, 2, IGNORE, 4, IGNORE]])
    loss, accuracy = next_token_loss(hidden, labels, head)
    expected = torch.nn.functional.cross_entropy(head(hidden[0, [1, 3]]), torch.tensor([2, 4]))
    torch.testing.assert_close(loss, expected)
    assert 0.0 <= accuracy <= 1.0
