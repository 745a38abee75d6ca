"""A tiny regression stage for tests of the training loop (also run under torchrun)."""

from __future__ import annotations

import sys

import torch
from torch import nn

from freeze_omni.train.config import TrainConfig
from freeze_omni.train.loop import train


class TinyModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        loss = nn.functional.mse_loss(self.head(self.frozen(x)).squeeze(-1), y)
        return loss, {"mse": loss.item()}


class TinyStage:
    def __init__(self) -> None:
        torch.manual_seed(123)
        self.module = TinyModule()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.evaluations = 0

    def plan(self, epoch: int, seed: int):
        order = torch.randperm(64, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return [order[i:i + 8].tolist() for i in range(0, 64, 8)]

    def load(self, spec, device):
        return {"x": self.x[spec].to(device), "y": self.y[spec].to(device)}

    def evaluate(self, module):
        self.evaluations += 1
        return {"mse": module(self.x, self.y)[0].item()}


if __name__ == "__main__":  # torchrun --nproc_per_node 2 tests/tiny_stage.py OUT_DIR
    stage = TinyStage()
    train(stage, TrainConfig(out_dir=sys.argv[1], max_steps=6, learning_rate=0.05, warmup_steps=1,
                             eval_every=0, checkpoint_every=100, log_every=1, threads=1))
    rank = torch.distributed.get_rank()
    torch.save(stage.module.head.state_dict(), f"{sys.argv[1]}/rank{rank}.pt")
