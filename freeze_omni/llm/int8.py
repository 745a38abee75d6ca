"""Weight-only int8 matmuls for the frozen LLM at inference time.

A decode step on a CPU is bound by reading the weights: every token streams all of them from
memory. Storing the projection matrices as int8 with one scale per output channel halves those
bytes against bfloat16, and `aten._weight_int8pack_mm` multiplies without widening them first.
Activations keep the model's dtype, so only the weights are rounded (to 1/254 of each row's
largest value). Training never uses this: the LLM the speech side learns against is the
unrounded one, and gradients do not flow through these layers.
"""

from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    """`nn.Linear` with its weight as int8 rows and per-row scales (symmetric, no zero point)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
        self.register_buffer("weight_int8", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), self.weight_int8, self.scale.to(x.dtype))
        y = y.view(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def quantize_int8(model: nn.Module) -> None:
    """Replace the decoder's projection matrices and its output head by `Int8Linear`, in place.
    The input embedding table stays as it is (a lookup reads only the rows it needs)."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 LLM weights run on the CPU only")
    for block in model.blocks:
        block.attn.qkv, block.attn.out = Int8Linear(block.attn.qkv), Int8Linear(block.attn.out)
        block.mlp.gate_up, block.mlp.down = Int8Linear(block.mlp.gate_up), Int8Linear(block.mlp.down)
    model.lm_head = Int8Linear(model.lm_head)
