"""The training loop every stage shares: batch, forward, loss, backward, clip, step; evaluate
every N steps; checkpoint model + optimiser + step + config; resume from the last checkpoint.

A stage supplies a module whose forward returns `(loss, metrics)`, a cheap deterministic batch
plan, a loader for one planned batch, and an evaluation. Launched with torchrun the same loop
runs data-parallel (DDP; gloo on CPU, nccl on GPU): each rank takes every world-th planned batch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from freeze_omni.llm import FrozenLLM
from freeze_omni.train.config import TrainConfig
from freeze_omni.train.schedule import learning_rate

CHECKPOINT = "last.pt"


class Stage(Protocol):
    module: nn.Module  # forward(**batch) -> (loss, {name: float})

    def plan(self, epoch: int, seed: int) -> Sequence[Any]:
        """The batches of one epoch as cheap descriptions (e.g. lists of utterance indices)."""
        ...

    def load(self, spec: Any, device: torch.device) -> dict[str, Any]:
        """Turn one planned batch into forward() keyword arguments on `device`."""
        ...

    def evaluate(self, module: nn.Module) -> dict[str, float]:
        """Held-out figures (e.g. WER), not the training loss alone."""
        ...


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def checkpoint_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Everything but the frozen LLM, which never changes and is by far the largest part. Other
    frozen parts (stage 3's encoder) are kept, so a checkpoint rebuilds its model on its own
    instead of trusting that the file it started from has not changed since."""
    llm = [name + "." for name, part in module.named_modules() if isinstance(part, FrozenLLM)]
    return {k: v for k, v in module.state_dict().items() if not any(k.startswith(prefix) for prefix in llm)}


def train(stage: Stage, config: TrainConfig, device: torch.device | str = "cpu") -> dict[str, Any]:
    device = torch.device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    ddp = setup_distributed(device)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed + ddp.rank)

    module = stage.module.to(device)
    groups, lr_scales = _param_groups(module, config.weight_decay)
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    step = _resume(out / CHECKPOINT, module, optimizer, device)
    model = nn.parallel.DistributedDataParallel(module) if ddp.world > 1 else module

    log = (out / "log.jsonl").open("a") if ddp.main else None
    progress = tqdm(total=config.max_steps, initial=step, desc=out.name, disable=not ddp.main,
                    file=sys.stderr, dynamic_ncols=True)
    start, last_eval = time.monotonic(), {}
    stopped_by_budget = False
    epoch, plan, offset = _position(stage, step, config.seed, ddp)
    while step < config.max_steps:
        if offset >= len(plan):
            epoch, offset = epoch + 1, 0
            plan = stage.plan(epoch, config.seed)[ddp.rank::ddp.world]
        batch = stage.load(plan[offset], device)
        offset += 1

        lr = learning_rate(step, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.max_steps)
        for group, scale in zip(optimizer.param_groups, lr_scales):
            group["lr"] = lr * scale
        model.train()
        loss, metrics = model(**batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip else torch.tensor(0.0)
        optimizer.step()
        step += 1
        progress.update(1)
        loss_value = loss.item()

        if ddp.main and (step % config.log_every == 0 or step == 1):
            record = {"step": step, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm),
                      "minutes": (time.monotonic() - start) / 60, **metrics}
            log.write(json.dumps(record) + "\n")
            log.flush()
            progress.set_postfix(loss=f"{loss_value:.3f}")
        if config.eval_every and step % config.eval_every == 0:
            last_eval = _evaluate(stage, module, step, log, ddp)
        over_budget = config.max_minutes and (time.monotonic() - start) / 60 >= config.max_minutes
        if step % config.checkpoint_every == 0 or step == config.max_steps or over_budget:
            _save(out / CHECKPOINT, module, optimizer, step, config, ddp)
        if over_budget:
            stopped_by_budget = True
            break
    progress.close()
    if config.eval_every and step % config.eval_every and not stopped_by_budget:
        last_eval = _evaluate(stage, module, step, log, ddp)
    if log:
        log.close()
    return {"step": step, "finished": step >= config.max_steps, "eval": last_eval,
            "minutes": (time.monotonic() - start) / 60}


def _param_groups(module: nn.Module, weight_decay: float) -> tuple[list[dict[str, Any]], list[float]]:
    """AdamW groups (weight decay on matrices only) and each group's learning-rate factor. A module
    may set `lr_scales`, {parameter name prefix: factor}, e.g. to move a pretrained part slower
    than a fresh one. The factors stay out of the optimiser's state, so a resumed run follows its
    config, and groups come decay-first as they always have, so older checkpoints still resume."""
    scales = getattr(module, "lr_scales", {})
    grouped: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            scale = next((factor for prefix, factor in scales.items() if name.startswith(prefix)), 1.0)
            grouped.setdefault((p.dim() < 2, scale), []).append(p)
    keys = sorted(grouped, key=lambda k: k[0])  # stable: decay groups first, then no-decay
    groups = [{"params": grouped[k], "weight_decay": 0.0 if k[0] else weight_decay} for k in keys]
    return groups, [k[1] for k in keys]


def _position(stage: Stage, step: int, seed: int, ddp: Distributed) -> tuple[int, Sequence[Any], int]:
    """Epoch, this rank's plan and offset for `step`, so a resumed run sees the batches it would have."""
    per_epoch = len(stage.plan(0, seed)[ddp.rank::ddp.world])
    if not per_epoch:
        raise ValueError("the training data yields no batches")
    epoch = step // per_epoch
    return epoch, stage.plan(epoch, seed)[ddp.rank::ddp.world], step % per_epoch


def _evaluate(stage: Stage, module: nn.Module, step: int, log, ddp: Distributed) -> dict[str, float]:
    if not ddp.main:
        return {}
    module.eval()
    with torch.no_grad():
        figures = stage.evaluate(module)
    log.write(json.dumps({"step": step, "eval": figures}) + "\n")
    log.flush()
    tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()), file=sys.stderr)
    return figures


def _save(path: Path, module: nn.Module, optimizer, step: int, config: TrainConfig, ddp: Distributed) -> None:
    if not ddp.main:
        return
    partial = path.with_suffix(".partial")
    torch.save({"step": step, "model": checkpoint_state(module), "optimizer": optimizer.state_dict(),
                "config": asdict(config)}, partial)
    partial.replace(path)


def _resume(path: Path, module: nn.Module, optimizer, device: torch.device) -> int:
    if not path.is_file():
        return 0
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    missing, unexpected = module.load_state_dict(checkpoint["model"], strict=False)
    frozen = {name for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    if unexpected or set(missing) - frozen:
        raise ValueError(f"{path} does not fit this model (missing {sorted(set(missing) - frozen)[:3]}, "
                         f"unexpected {unexpected[:3]})")
    optimizer.load_state_dict(checkpoint["optimizer"])
    print(f"resuming from {path} at step {checkpoint['step']}", file=sys.stderr)
    return int(checkpoint["step"])
