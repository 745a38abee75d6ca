"""The AR decoder's step on ONNX Runtime: `ARDecoder.step` for one session as one graph call.

Why: a step is ~120 small ops on [1, 192] vectors. Eager PyTorch spends tens of microseconds of
dispatch on each, so a step cost ~9 ms on the busy 2-core CPU, while its arithmetic (~3M
multiply-adds, half of them in the codebook head) needs a fraction of that. ONNX Runtime runs
the whole step in one call. The PyTorch module stays the reference and the training path: the
graph is traced from the decoder's own modules (`StepGraph`), and a fresh export is checked
against `ARDecoder.step` before it is used or cached.

The graph, for one session (no batch axis):

    inputs   symbol [1] int64 (previous symbol), state [1, dim] (encoder state at the pointer),
             count [1] int64, position [1] int64 (steps already taken: the rotary position),
             per layer i: keys_i, values_i [heads, capacity, head_dim] and bias_i [capacity]
    outputs  logits [outputs], new_keys, new_values [layers, heads, head_dim] (this step's,
             rotary applied)

A session's cache (`StepCache`) is one buffer per kind for all layers: the NAR prefix's keys and
values in the first L rows, then one row per step; the caller writes each step's new row, and
the buffer doubles when full. `bias_i` is the additive key bias the torch step builds as a mask:
the prefix's learned bias on its rows, 0 on past steps, -inf on rows not written yet (exactly
zero weight). So nothing is copied per step (ORT reads the numpy buffers in place), attending
over the few unwritten rows costs less than a copy would, and the no-prefix case is just L = 0:
one graph for both.

Export happens once per decoder weights: `load_onnx_step` keys the file in
`cache_dir()/decoder/step/` by a hash of the AR decoder's weights, its config and `FORMAT`,
writes it atomically with the file's own digest beside it, and re-exports a file whose digest
does not match. If export or the check fails (an old onnx, an unsupported op), it warns once and
returns None: the caller keeps the PyTorch step.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from freeze_omni.decoder.layers import KV, rotary_tables
from freeze_omni.decoder.model import ARDecoder, DecoderConfig, Prefix
from freeze_omni.paths import cache_dir, write_atomic

# Bump when the graph's inputs, outputs or math change: old files are then never read again.
FORMAT = 1
OPSET = 17
INITIAL_CAPACITY = 256  # step rows per layer at the start of a sentence (~4.5 s of speech); doubles when full
CHECK_ATOL = 1e-3  # a fresh export must reproduce the torch step this closely (float32 gives ~1e-6)


class StepGraph(nn.Module):
    """`ARDecoder.step` for one session, written for export. It uses the decoder's own modules,
    and where it computes something differently the result is the same up to float rounding:
    - the input embedding is one row of a table (symbol embedding + the code's vector through
      `code_input`, precomputed for every symbol) instead of two lookups and a matmul;
    - rotary is `x * cos + (x @ R) * sin` with R the constant half-rotation (exact: one +-1 per column);
    - the cache is a fixed-capacity buffer whose rows hold the prefix, then one row per step, with
      a per-layer additive key bias (prefix bias / 0 / -inf on rows not written yet); the new
      position's own key and value are scored apart and never copied into the buffer here."""

    def __init__(self, decoder: ARDecoder) -> None:
        super().__init__()
        c = decoder.config
        self.decoder = decoder
        self.layers = len(decoder.blocks)
        self.heads, self.head_dim = c.heads, c.dim // c.heads
        with torch.no_grad():
            codebook = decoder.head.codebook
            vectors = torch.cat([codebook, codebook.new_zeros(c.vocab.inputs - codebook.shape[0], codebook.shape[1])])
            self.register_buffer("inputs", decoder.symbols.weight + decoder.code_input(vectors))
            transposed, half_norms = decoder.head.derived()
            self.register_buffer("transposed", transposed.clone())
            self.register_buffer("half_norms", half_norms.clone())
            half = self.head_dim // 2
            rotation = torch.zeros(self.head_dim, self.head_dim)
            rotation[torch.arange(half) + half, torch.arange(half)] = -1.0
            rotation[torch.arange(half), torch.arange(half) + half] = 1.0
            self.register_buffer("rotation", rotation.to(codebook.dtype))

    def forward(self, symbol: torch.Tensor, state: torch.Tensor, count: torch.Tensor, position: torch.Tensor,
                *buffers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.decoder
        x = self.inputs[symbol] + d.read(state) + d.counts(count.clamp_max(d.config.max_count))  # [1, dim]
        cos, sin = rotary_tables(position, self.head_dim, x.dtype)  # [1, head_dim / 2]
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        new_keys, new_values = [], []
        for i, block in enumerate(d.blocks):
            keys, values, bias = buffers[3 * i: 3 * i + 3]
            y, k, v = self._attention(block.attention, block.norm1(x), cos, sin, keys, values, bias)
            new_keys.append(k)
            new_values.append(v)
            x = x + y
            x = x + block.mlp(block.norm2(x))
        logits = d.head.scores(d.norm(x), self.transposed, self.half_norms)[0]
        return logits, torch.stack(new_keys), torch.stack(new_values)

    def _attention(self, attention, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                   values: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [1, dim] -> (output [1, dim], this position's key and value [heads, head_dim])."""
        qkv = attention.qkv(x).view(3, self.heads, self.head_dim)
        qk = qkv[:2] * cos + (qkv[:2] @ self.rotation) * sin
        q, k, v = qk[0] * self.head_dim ** -0.5, qk[1], qkv[2]
        cached = (q[:, None] @ keys.transpose(1, 2))[:, 0] + bias  # [heads, capacity]
        weights = torch.softmax(torch.cat([cached, (q * k).sum(-1, keepdim=True)], -1), -1)
        y = (weights[:, None, :-1] @ values)[:, 0] + weights[:, -1:] * v  # [heads, head_dim]
        return attention.out(y.reshape(1, -1)), k, v


@dataclass
class StepCache:
    """One sentence's AR cache for the ONNX step, written in place: the prefix's keys/values in
    the first rows of every layer's buffer, then one row per step."""

    keys: np.ndarray  # [layers, heads, capacity, head_dim]; rows not written yet are zero
    values: np.ndarray
    bias: np.ndarray  # [layers, capacity]: prefix key bias, 0 on rows of past steps, -inf on rows not written
    prefix: int  # rows the prefix takes
    length: int = 0  # steps written after it

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def grow(self) -> None:
        """Double the capacity. New rows are zero with bias -inf: zero weight on finite values
        (0 * garbage could be NaN)."""
        n = self.capacity
        keys, values = (np.zeros((*a.shape[:2], 2 * n, a.shape[3]), a.dtype) for a in (self.keys, self.values))
        keys[:, :, :n], values[:, :, :n] = self.keys, self.values
        bias = np.full((self.bias.shape[0], 2 * n), -np.inf, self.bias.dtype)
        bias[:, :n] = self.bias
        self.keys, self.values, self.bias = keys, values, bias


def input_names(layers: int) -> list[str]:
    return ["symbol", "state", "count", "position",
            *(f"{kind}_{i}" for i in range(layers) for kind in ("keys", "values", "bias"))]


def export_step(decoder: ARDecoder) -> bytes:
    """The ONNX graph (bytes) of `decoder`'s step, in float32, with a dynamic cache capacity."""
    decoder = copy.deepcopy(decoder).float().cpu().eval()
    c = decoder.config
    heads, head_dim = c.heads, c.dim // c.heads
    names = input_names(c.decoder_layers)
    capacity = 5  # the example fixes the trace only; capacity is a dynamic axis
    example = [torch.tensor([1]), torch.zeros(1, c.dim), torch.tensor([0]), torch.tensor([2])]
    for _ in range(c.decoder_layers):
        example += [torch.zeros(heads, capacity, head_dim), torch.zeros(heads, capacity, head_dim),
                    torch.zeros(capacity)]
    dynamic = {n: {0 if n.startswith("bias") else 1: "capacity"} for n in names[4:]}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(StepGraph(decoder), tuple(example), buffer, dynamo=False, input_names=names,
                          output_names=["logits", "new_keys", "new_values"], dynamic_axes=dynamic,
                          opset_version=OPSET, do_constant_folding=True)
    return buffer.getvalue()


class OnnxStep:
    """A loaded step graph: `new_cache` once per sentence, then `__call__` once per symbol.
    Stateless between calls (the cache belongs to the session), so sessions can share it."""

    def __init__(self, graph: bytes, decoder_config: DecoderConfig, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.config = decoder_config
        self.layers = decoder_config.decoder_layers

    def new_cache(self, prefix: Prefix | None = None, capacity: int = INITIAL_CAPACITY) -> StepCache:
        """An empty cache for `capacity` steps after the prefix (batch row 0 of `prefix`)."""
        c = self.config
        length = 0 if prefix is None else prefix.kv[0].k.shape[2]
        shape = (self.layers, c.heads, length + capacity, c.dim // c.heads)
        keys, values = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        bias = np.full((self.layers, length + capacity), -np.inf, np.float32)
        if prefix is not None:
            array = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
            for i, kv in enumerate(prefix.kv):
                keys[i, :, :length], values[i, :, :length] = array(kv.k[0]), array(kv.v[0])
                # the row the torch step adds: the bias on real keys, the dtype's minimum on padding
                bias[i, :length] = array(prefix.key_bias(i)[0, 0, 0])
        return StepCache(keys, values, bias, length)

    def __call__(self, symbol: int, state: np.ndarray, count: int, position: int, cache: StepCache) -> np.ndarray:
        """One symbol: logits [outputs] float32; the step's keys/values are written into `cache`."""
        if position != cache.length:
            raise ValueError(f"step at position {position}, but the cache holds {cache.length}")
        row = cache.prefix + position
        if row >= cache.capacity:
            cache.grow()
        feeds = {"symbol": np.array([symbol], np.int64), "state": state.reshape(1, -1),
                 "count": np.array([count], np.int64), "position": np.array([position], np.int64)}
        for i in range(self.layers):
            feeds[f"keys_{i}"], feeds[f"values_{i}"], feeds[f"bias_{i}"] = cache.keys[i], cache.values[i], cache.bias[i]
        logits, new_keys, new_values = self.session.run(None, feeds)
        cache.keys[:, :, row], cache.values[:, :, row], cache.bias[:, row] = new_keys, new_values, 0.0
        cache.length = position + 1
        return logits


def weights_key(decoder: ARDecoder) -> str:
    """Hash of what the graph is made of: FORMAT, the config, every tensor of the AR decoder (in float32)."""
    digest = hashlib.sha256(f"ar-step|{FORMAT}|{OPSET}|{json.dumps(asdict(decoder.config), sort_keys=True)}".encode())
    for name, tensor in sorted(decoder.state_dict().items()):
        t = tensor.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        digest.update(f"|{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_step(step: OnnxStep, decoder: ARDecoder, steps: int = 4) -> float:
    """Max |logit difference| between the graph and `ARDecoder.step` over a few steps with a
    prefix of 2 keys and a cache that grows (random inputs, fixed seed): a wrong export shows here."""
    c = decoder.config
    generator = torch.Generator().manual_seed(0)
    reference = copy.deepcopy(decoder).float().cpu().eval()
    heads, head_dim = c.heads, c.dim // c.heads
    kv = [KV(*(torch.randn(1, heads, 2, head_dim, generator=generator) for _ in range(2)))
          for _ in range(c.decoder_layers)]
    prefix = Prefix(kv, torch.ones(1, 2, dtype=torch.bool), torch.randn(c.decoder_layers, generator=generator))
    cache, caches, worst = step.new_cache(prefix, capacity=2), None, 0.0
    with torch.no_grad():
        for position in range(steps):
            symbol = int(torch.randint(c.vocab.inputs, (1,), generator=generator))
            state = torch.randn(1, c.dim, generator=generator)
            count = position % 3
            expected, caches = reference.step(torch.tensor([symbol]), state, torch.tensor([count]), position,
                                              caches, prefix)
            got = step(symbol, state[0].numpy(), count, position, cache)
            worst = max(worst, float((torch.from_numpy(got) - expected[0]).abs().max()))
    return worst


def step_folder() -> Path:
    return cache_dir() / "decoder" / "step"


def load_onnx_step(decoder: ARDecoder, threads: int = 1, folder: Path | None = None) -> OnnxStep | None:
    """The ONNX step of `decoder`, exported once per weights into `folder` (default
    `cache_dir()/decoder/step/`), or None (with one warning) when it cannot be made: the caller
    then keeps `ARDecoder.step`. A cached file whose digest does not match is exported anew."""
    try:
        key = weights_key(decoder)
        folder = folder or step_folder()
        path, manifest = folder / f"ar-step-{key[:24]}.onnx", folder / f"ar-step-{key[:24]}.json"
        graph = _read_cached(path, manifest, key)
        if graph is not None:
            try:
                return OnnxStep(graph, decoder.config, threads)
            except Exception:  # e.g. written by a newer onnxruntime: export it again for this one
                pass
        graph = export_step(decoder)
        step = OnnxStep(graph, decoder.config, threads)
        if (error := check_step(step, decoder)) > CHECK_ATOL:
            raise RuntimeError(f"the exported step differs from the torch step by {error:.2g}")
    except Exception as error:  # any failure costs speed, never the voice
        warnings.warn(f"AR decoder step stays on PyTorch (ONNX export failed: {type(error).__name__}: {error})",
                      RuntimeWarning, stacklevel=2)
        return None
    try:
        write_atomic(path, graph)
        write_atomic(manifest, json.dumps({"key": key, "sha256": hashlib.sha256(graph).hexdigest(),
                                           "format": FORMAT, "bytes": len(graph)}))
    except OSError as error:  # a read-only cache only costs the next start an export
        warnings.warn(f"could not cache the AR decoder's ONNX step in {folder}: {error}", RuntimeWarning,
                      stacklevel=2)
    return step


def _read_cached(path: Path, manifest: Path, key: str) -> bytes | None:
    """The cached graph's bytes if the file and its manifest agree, else None (it will be replaced)."""
    try:
        meta = json.loads(manifest.read_text())
        graph = path.read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("format") != FORMAT or hashlib.sha256(graph).hexdigest() != meta.get("sha256"):
        return None
    return graph
