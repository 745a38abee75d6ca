"""The single-codebook codec: one token per `stack` frames of the Piper voice's latent.

Two latent domains (measured side by side in README.md; `prior` is the default):

- `prior`: tokens quantise the voice's prior mean frames (the text encoder's output expanded by
  the phoneme durations, constant over each phoneme id). Each code also stores the mean prior
  log-scale of its frames. decode: z_p = code mean + exp(code log-scale) * noise * noise_scale
  -> flow -> generator, i.e. Piper's own sampling from a quantised prior. The noise is a fixed
  function of (seed, absolute frame index), so packets decoded apart match the whole decode.
- `z`: tokens quantise the sampled latent z itself; decode: z -> generator.

encode: frames [T, 192] -> group `stack` consecutive frames into one vector [stack * 192] -> the
        index of its nearest codebook entry (squared Euclidean) -> tokens [ceil(T / stack)].
decode: tokens -> z [N * stack, 192] -> generator -> waveform [N * stack * 256] at 22.05 kHz
        (`decode_16k` resamples for the rest of the system).

The codebook is plain k-means over frames of the voice speaking training sentences (`train.py`);
there is no neural encoder, so only speech this voice produces can be encoded: the system's own
answer voice. Weights: fp16 safetensors with `codebook` (and `log_scales` for `prior`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from freeze_omni.audio import SAMPLE_RATE as SYSTEM_RATE
from freeze_omni.audio.io import resample
from freeze_omni.codec.piper_latent import (
    HOP, LATENT_DIM, NOISE_SCALE, SAMPLE_RATE, VOICE_NAME, Flow, Generator, SentenceLatent, shared_flow,
    shared_generator,
)
from freeze_omni.errors import ModelNotFoundError
from freeze_omni.paths import DEFAULT_MODEL_DIR

DEFAULT_CODEC_PATH = DEFAULT_MODEL_DIR / "codec.safetensors"
DOMAINS = ("prior", "z")
NOISE_BLOCK = 256  # frames of decode noise drawn per (seed, block) random stream


@dataclass(frozen=True)
class CodecConfig:
    codes: int = 4096  # codebook size = token vocabulary
    stack: int = 2  # latent frames per token (2 = 43 tokens/s, 1 = 86 tokens/s)
    domain: str = "prior"  # which latent the tokens quantise: "prior" or "z"
    noise_scale: float = NOISE_SCALE  # prior domain: sampling noise at decode (Piper's default)
    latent_dim: int = LATENT_DIM
    hop: int = HOP  # waveform samples per latent frame
    sample_rate: int = SAMPLE_RATE
    voice: str = VOICE_NAME

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")

    @property
    def name(self) -> str:
        return f"{self.domain}-{self.codes}x{self.stack}"

    @property
    def vector_dim(self) -> int:
        return self.stack * self.latent_dim

    @property
    def samples_per_token(self) -> int:
        return self.stack * self.hop

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate / self.samples_per_token


def stack_frames(z: np.ndarray | torch.Tensor, stack: int) -> torch.Tensor:
    """[T, D] -> [ceil(T / stack), stack * D]; a last partial group repeats the last frame."""
    z = torch.as_tensor(np.asarray(z, np.float32) if not isinstance(z, torch.Tensor) else z).float()
    frames, dim = z.shape
    if frames == 0:
        return z.new_zeros(0, stack * dim)
    pad = -frames % stack
    if pad:
        z = torch.cat([z, z[-1:].expand(pad, dim)])
    return z.reshape(-1, stack * dim)


def nearest(vectors: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest codebook row for each vector (squared Euclidean), in chunks."""
    norms = (codebook * codebook).sum(1)
    out = torch.empty(vectors.shape[0], dtype=torch.long)
    for start in range(0, vectors.shape[0], chunk):
        x = vectors[start:start + chunk].float()
        out[start:start + chunk] = torch.addmm(norms, x, codebook.T, alpha=-2.0).argmin(1)
    return out


def frame_noise(seed: int, start: int, count: int, dim: int = LATENT_DIM) -> np.ndarray:
    """Standard normal noise [count, dim] for absolute frames start..start+count-1 of a stream:
    the same frame always gets the same values, however the stream is cut into packets."""
    if count <= 0:
        return np.zeros((0, dim), np.float32)
    first, last = start // NOISE_BLOCK, (start + count - 1) // NOISE_BLOCK
    blocks = [np.random.default_rng([seed, b]).standard_normal((NOISE_BLOCK, dim), np.float32)
              for b in range(first, last + 1)]
    offset = start - first * NOISE_BLOCK
    return np.concatenate(blocks)[offset:offset + count]


class Codec:
    """Stateless: encode/decode are pure given the weights; streaming lives in `streaming.py`."""

    def __init__(self, codebook: np.ndarray | torch.Tensor, config: CodecConfig,
                 log_scales: np.ndarray | torch.Tensor | None = None, generator: Generator | None = None,
                 flow: Flow | None = None) -> None:
        codebook = torch.as_tensor(np.asarray(codebook) if not isinstance(codebook, torch.Tensor) else codebook)
        if tuple(codebook.shape) != (config.codes, config.vector_dim):
            raise ValueError(f"codebook shape {tuple(codebook.shape)} != ({config.codes}, {config.vector_dim})")
        if config.domain == "prior":
            if log_scales is None:
                raise ValueError("a prior-domain codec needs log_scales")
            log_scales = torch.as_tensor(np.asarray(log_scales) if not isinstance(log_scales, torch.Tensor)
                                         else log_scales).float()
            if log_scales.shape != codebook.shape:
                raise ValueError(f"log_scales shape {tuple(log_scales.shape)} != codebook {tuple(codebook.shape)}")
        self.config = config
        self.codebook = codebook.float().contiguous()
        self.log_scales = log_scales.contiguous() if config.domain == "prior" else None
        self._generator = generator
        self._flow = flow

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = shared_generator()
        return self._generator

    @property
    def flow(self) -> Flow:
        if self._flow is None:
            self._flow = shared_flow()
        return self._flow

    # --- frames -> tokens -----------------------------------------------------------------------

    def frames_of(self, sentence: SentenceLatent) -> np.ndarray:
        """The frames this codec quantises, from what Piper produced for one sentence."""
        return sentence.prior_frames()[0] if self.config.domain == "prior" else sentence.z

    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """Latent frames [T, 192] of the system's voice (prior mean frames, or z for the z domain)
        -> tokens [ceil(T / stack)] (int64)."""
        return nearest(stack_frames(frames, self.config.stack), self.codebook).numpy()

    def encode_sentence(self, sentence: SentenceLatent) -> np.ndarray:
        return self.encode(self.frames_of(sentence))

    def check_tokens(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.config.codes):
            raise ValueError(f"token out of range [0, {self.config.codes})")
        return tokens

    def vectors(self, tokens: np.ndarray | list[int]) -> np.ndarray:
        """tokens [N] -> codebook frames [N * stack, 192] (prior means, or z)."""
        index = torch.from_numpy(self.check_tokens(tokens))
        return self.codebook[index].reshape(-1, self.config.latent_dim).numpy()

    # --- tokens -> latent -> audio --------------------------------------------------------------

    def latent(self, tokens: np.ndarray | list[int], offset: int = 0, seed: int = 0) -> np.ndarray:
        """tokens [N] -> the generator's input z [N * stack, 192]. `offset` is the absolute index
        of tokens[0] in its stream: it picks the decode noise, so that packets match the whole."""
        means = self.vectors(tokens)
        if self.config.domain == "z":
            return means
        index = torch.from_numpy(self.check_tokens(tokens))
        log_scales = self.log_scales[index].reshape(-1, self.config.latent_dim).numpy()
        noise = frame_noise(seed, offset * self.config.stack, len(means))
        return self.flow(means + np.exp(log_scales) * noise * self.config.noise_scale)

    def decode(self, tokens: np.ndarray | list[int], offset: int = 0, seed: int = 0) -> np.ndarray:
        """tokens [N] -> float32 waveform [N * stack * 256] at 22.05 kHz."""
        return self.generator(self.latent(tokens, offset, seed))

    def decode_16k(self, tokens: np.ndarray | list[int], offset: int = 0, seed: int = 0) -> np.ndarray:
        """The same waveform resampled to the system's 16 kHz."""
        return resample(self.decode(tokens, offset, seed), self.config.sample_rate, SYSTEM_RATE)

    # --- weights --------------------------------------------------------------------------------

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """fp16 safetensors: `codebook` [codes, stack * 192] (+ `log_scales`), config as metadata."""
        from freeze_omni.safetensors_io import save_fp16

        tensors = {"codebook": self.codebook}
        if self.log_scales is not None:
            tensors["log_scales"] = self.log_scales
        return save_fp16(path, tensors, {**(metadata or {}), "config": asdict(self.config)})

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CODEC_PATH, generator: Generator | None = None,
             flow: Flow | None = None) -> Codec:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"codec weights not found: {path} (train them: freeze-omni train codec)")
        with safe_open(str(path), framework="pt") as f:
            config = CodecConfig(**json.loads(f.metadata()["config"]))
            codebook = f.get_tensor("codebook").float()
            log_scales = f.get_tensor("log_scales").float() if "log_scales" in f.keys() else None
        return cls(codebook, config, log_scales, generator, flow)


def read_metadata(path: str | Path) -> dict:
    """The safetensors metadata of a codec file (config, training recipe, measured WER)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata())
