import json

import numpy as np
import pytest
import torch

from freeze_omni.audio.io import write_wav
from freeze_omni.train.data import (SpecAugmentConfig, Utterance, pad_features, plan_batches, read_utterances,
                                    spec_augment)


def _utterances(n: int) -> list[Utterance]:
    rng = np.random.default_rng(0)
    return [Utterance(audio=f"{i}.wav", text=str(i), seconds=float(rng.uniform(0.5, 10))) for i in range(n)]


def test_batches_cover_everything_once_within_the_budget():
    utterances = _utterances(200)
    batches = plan_batches(utterances, max_batch_seconds=30.0, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(200))
    for batch in batches:
        padded = max(utterances[i].seconds for i in batch) * len(batch)
        assert padded <= 30.0 or len(batch) == 1


def test_plans_are_deterministic_per_seed_and_differ_across_epochs():
    utterances = _utterances(100)
    assert plan_batches(utterances, 20.0, seed=1) == plan_batches(utterances, 20.0, seed=1)
    assert plan_batches(utterances, 20.0, seed=1) != plan_batches(utterances, 20.0, seed=2)


def test_pad_features_keeps_lengths():
    batch, lengths = pad_features([np.ones((3, 4)), np.ones((5, 4))])
    assert batch.shape == (2, 5, 4) and lengths.tolist() == [3, 5]
    assert batch[0, 3:].abs().sum() == 0


def test_spec_augment_masks_only_inside_each_utterance():
    feats = torch.randn(2, 200, 80)
    lengths = torch.tensor([200, 120])
    out = spec_augment(feats, lengths, SpecAugmentConfig(max_time_fraction=0.2), torch.Generator().manual_seed(0))
    assert out.shape == feats.shape and not torch.equal(out, feats)
    assert torch.equal(out[1, 120:], feats[1, 120:])
    assert (out != feats).float().mean() < 0.5


def test_read_utterances_uses_durations_and_drops_long_ones(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32))
    write_wav(tmp_path / "b.wav", np.zeros(48000, dtype=np.float32))
    lines = [{"audio": "a.wav", "text": "one"}, {"audio": "b.wav", "text": "three", "duration": 3.0}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    utterances = read_utterances(tmp_path / "m.jsonl", max_seconds=2.0)
    assert [(u.text, u.seconds) for u in utterances] == [("one", pytest.approx(1.0))]
