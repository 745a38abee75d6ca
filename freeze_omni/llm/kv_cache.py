"""Per-session key/value cache of the frozen LLM.

The cache belongs to a session, never to the model: the model reads and extends it, so any replica
can continue any user's conversation. Storage is preallocated and grows by doubling, so a decode
step writes in place instead of concatenating 30 layers of tensors every token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    keys: torch.Tensor    # [layers, batch, kv_heads, capacity, head_dim]
    values: torch.Tensor  # same shape as keys
    length: int = 0       # positions filled (shared by all batch rows)

    @classmethod
    def empty(cls, num_layers: int, batch: int, kv_heads: int, head_dim: int, capacity: int,
              dtype: torch.dtype, device: torch.device | str) -> "KVCache":
        shape = (num_layers, batch, kv_heads, max(capacity, 1), head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def reserve(self, new_positions: int) -> None:
        """Make room for `new_positions` more entries (call once per forward, before the layers)."""
        needed = self.length + new_positions
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        grown_k = self.keys.new_zeros(*self.keys.shape[:3], capacity, self.keys.shape[4])
        grown_v = torch.zeros_like(grown_k)
        grown_k[:, :, :, : self.length] = self.keys[:, :, :, : self.length]
        grown_v[:, :, :, : self.length] = self.values[:, :, :, : self.length]
        self.keys, self.values = grown_k, grown_v

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v ([batch, kv_heads, new, head_dim]) after the filled part; return all keys/values.

        `length` moves on only in `advance`, after every layer has written the same positions.
        """
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, new_positions: int) -> None:
        self.length += new_positions

    def crop(self, length: int) -> None:
        """Forget everything after `length` positions (e.g. the unspoken part of an interrupted answer)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of {self.length} positions to {length}")
        self.length = length

    def clone(self, length: int | None = None) -> "KVCache":
        """A copy of the first `length` positions (default: all of them)."""
        length = self.length if length is None else length
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot copy {length} positions of a cache of {self.length}")
        return KVCache(self.keys[:, :, :, :length].clone(), self.values[:, :, :, :length].clone(), length)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Only the filled part: what a session file needs to continue the conversation later."""
        return {"keys": self.keys[:, :, :, : self.length].contiguous(),
                "values": self.values[:, :, :, : self.length].contiguous(), "length": self.length}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> "KVCache":
        return cls(state["keys"].to(device), state["values"].to(device), int(state["length"]))
