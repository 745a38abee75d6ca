import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from freeze_omni.cli.train import CONFIG_DIR, STAGES
from freeze_omni.errors import FreezeOmniError
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import CHECKPOINT, train
from freeze_omni.train.schedule import learning_rate
from tiny_stage import TinyStage


def _config(out: Path, **kwargs) -> TrainConfig:
    settings = dict(out_dir=str(out), max_steps=40, learning_rate=0.3, min_learning_rate=0.01, warmup_steps=2,
                    eval_every=20, checkpoint_every=10, log_every=5, threads=1)
    return TrainConfig(**{**settings, **kwargs})


def test_loss_falls_and_the_frozen_part_stays(tmp_path):
    stage = TinyStage()
    frozen_before = stage.module.frozen.weight.clone()
    start = stage.evaluate(stage.module)["mse"]
    result = train(stage, _config(tmp_path))
    assert result["finished"] and result["step"] == 40
    assert result["eval"]["mse"] < 0.2 * start
    assert torch.equal(stage.module.frozen.weight, frozen_before)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval" in r] == [20, 40]
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert {"frozen.weight", "head.weight"} <= set(checkpoint["model"])  # only a FrozenLLM is left out (stage tests)


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight = TinyStage()
    train(straight, _config(tmp_path / "a", max_steps=30))
    first = TinyStage()
    train(first, _config(tmp_path / "b", max_steps=30, max_minutes=1e-9))  # stops after one step
    resumed = TinyStage()
    result = train(resumed, _config(tmp_path / "b", max_steps=30))
    assert result["finished"]
    for name, value in straight.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, rtol=0, atol=1e-6)


def test_time_budget_stops_with_a_checkpoint(tmp_path):
    result = train(TinyStage(), _config(tmp_path, max_minutes=1e-9))
    assert not result["finished"] and result["step"] == 1
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["step"] == 1


def test_schedule_warms_up_then_decays_to_the_floor():
    values = [learning_rate(s, 1.0, 0.1, 10, 100) for s in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[100] == pytest.approx(0.1)


def test_config_file_with_unknown_setting_is_rejected(tmp_path):
    (tmp_path / "ok.toml").write_text('[train]\nmax_steps = 5\n[stage]\nmanifest = "x.jsonl"\n')
    config = TrainConfig.from_toml(tmp_path / "ok.toml", {"out_dir": "o"})
    assert config.max_steps == 5 and config.stage == {"manifest": "x.jsonl"} and config.out_dir == "o"
    (tmp_path / "bad.toml").write_text("[train]\nmax_stepz = 5\n")
    with pytest.raises(FreezeOmniError, match="max_stepz"):
        TrainConfig.from_toml(tmp_path / "bad.toml")


def test_torchrun_two_cpu_processes_train_in_step(tmp_path):
    script = Path(__file__).with_name("tiny_stage.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
         str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    initial = TinyStage().module.head.state_dict()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name])  # gradients were averaged across ranks
        assert not torch.equal(rank0[name], initial[name])


def test_lr_scales_move_each_part_at_its_own_rate(tmp_path):
    stage = TinyStage()
    stage.module.lr_scales = {"head.bias": 0.0}
    bias, weight = stage.module.head.bias.clone(), stage.module.head.weight.clone()
    train(stage, _config(tmp_path, max_steps=5, eval_every=0))
    assert torch.equal(stage.module.head.bias, bias)
    assert not torch.equal(stage.module.head.weight, weight)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] > 0


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_packaged_config_reads_into_its_stage_settings(stage):
    _, module_name, prefix = STAGES[stage]
    config = TrainConfig.from_toml(CONFIG_DIR / f"{stage.replace('-', '_')}.toml")
    settings = getattr(importlib.import_module(module_name), f"{prefix}Settings").from_dict(config.stage)
    assert config.max_steps > 0 and settings is not None
