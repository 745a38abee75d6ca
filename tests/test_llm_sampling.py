import pytest
import torch

from freeze_omni.llm.sampling import SamplingConfig, filter_logits, sample


def test_greedy_and_top_k_one_pick_the_argmax():
    logits = torch.tensor([[0.1, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample(logits, SamplingConfig()).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert sample(logits, SamplingConfig(temperature=2.0, top_k=1), gen).tolist() == [1, 0]


def test_top_k_never_samples_outside_the_k_best():
    logits = torch.tensor([[1.0, 0.9, 0.8, 0.7, 0.6, 0.5]])
    gen = torch.Generator().manual_seed(1)
    draws = {int(sample(logits, SamplingConfig(temperature=5.0, top_k=3), gen)) for _ in range(300)}
    assert draws == {0, 1, 2}


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.1))
    assert kept.tolist() == [[True, False, False, False]]


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError):
        SamplingConfig(temperature=-1)
