"""Training the codec = k-means over latent frames of the system's voice, measured by ASR.

1. Texts: the corpus text mix (`freeze_omni.data.texts`), TRAIN split sentences only; held-out
   sentences for measurement come from the dev split (test stays untouched).
2. Latents: Piper's text -> latent sub-graph speaks every text with a delivery sampled the way
   the corpus builder samples it for this voice (rate 0.85-1.2, expressiveness 0.7-1.3 on Piper's
   noise scales), keeping durations, the prior of every phoneme id and the sampled z. Saved in
   shards of `SHARD` texts, so an interrupted or larger run reuses them.
3. Codebook: batched k-means++ seeding on a sample, then full-batch Lloyd iterations in torch;
   empty clusters are re-seeded with the worst-fitting vectors. Prior domain: each code also
   gets the mean log-scale of the frames assigned to it.
4. Resynthesis WER: Piper's own audio for a held-out sentence (source) and the same sentence's
   frames through encode -> decode, both judged by the reference ASR against the text.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from freeze_omni.codec.model import Codec, CodecConfig, stack_frames
from freeze_omni.codec.piper_latent import (
    HOP, LATENT_DIM, NOISE_SCALE, NOISE_W, SAMPLE_RATE, Generator, PiperLatent, Scales, SentenceLatent,
)

SHARD = 200  # texts per latent shard file
SHARD_FORMAT = 2  # bump when the shard contents change
SENTENCE_GAP_SECONDS = 0.2
MAX_VECTORS = 200_000  # k-means cost is linear in vectors: ~50 per code is plenty for 4096 codes


# --- texts ----------------------------------------------------------------------------------


def split_texts(split: str, seed: int = 0) -> list[str]:
    """Texts of one corpus split (`train`, `dev` or `test`), in a shuffled order stable for a seed.

    The order is prefix-stable: asking for more texts later only appends, so cached latents of the
    first texts stay valid.
    """
    from freeze_omni.data.plan import text_split

    texts = [text for text in _default_texts(seed) if text_split(text) == split]
    random.Random(f"codec-{split}-{seed}").shuffle(texts)
    return texts


@cache
def _default_texts(seed: int) -> tuple[str, ...]:
    from freeze_omni.data.texts import default_texts

    return tuple(item.text for item in default_texts(seed))


def piper_scales(text: str, seed: int = 0) -> Scales:
    """The delivery the corpus builder would sample for the Piper voice, fixed per (seed, text)."""
    from freeze_omni.data.voices import VOICES, sample_delivery

    voice = next(v for v in VOICES if v.engine == "piper")
    delivery = sample_delivery(voice, random.Random(f"codec|{seed}|{text}"))
    return Scales(NOISE_SCALE * delivery.expressiveness, 1.0 / delivery.rate, NOISE_W * delivery.expressiveness)


# --- latents --------------------------------------------------------------------------------


@dataclass
class LatentSet:
    """Piper sentences of a list of texts (arrays in float16), with the text each belongs to."""

    sentences: list[SentenceLatent]
    text_index: np.ndarray  # [S] which text each sentence belongs to
    texts: list[str]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sentences)

    @property
    def seconds(self) -> float:
        return self.frames * HOP / SAMPLE_RATE


def _texts_hash(texts: Sequence[str], seed: int) -> str:
    return hashlib.sha1(("\n".join(texts) + f"|{seed}").encode()).hexdigest()[:16]


def _cat(arrays: list[np.ndarray], shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype)


def _write_shard(path: Path, sentences: list[SentenceLatent], owners: list[int], texts: list[str]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        z=_cat([s.z for s in sentences], (0, LATENT_DIM), np.float16),
        prior_mean=_cat([s.prior_mean for s in sentences], (0, LATENT_DIM), np.float16),
        prior_log_scale=_cat([s.prior_log_scale for s in sentences], (0, LATENT_DIM), np.float16),
        durations=_cat([s.durations for s in sentences], (0,), np.int64),
        phoneme_ids=_cat([s.phoneme_ids for s in sentences], (0,), np.int64),
        phonemes=np.array(["\t".join(s.phonemes) for s in sentences]),
        frames=np.array([s.frames for s in sentences], np.int64),
        ids=np.array([len(s.phoneme_ids) for s in sentences], np.int64),
        text_index=np.array(owners, np.int64),
        texts=np.array(texts),
    )
    tmp.replace(path)


def _read_shard(path: Path) -> tuple[list[SentenceLatent], np.ndarray]:
    with np.load(path) as shard:
        frames, ids = shard["frames"], shard["ids"]

        def split(name: str, lengths: np.ndarray) -> list[np.ndarray]:
            return np.split(shard[name], np.cumsum(lengths)[:-1]) if len(lengths) else []

        sentences = [
            SentenceLatent(tuple(p.split("\t")), i, d, m, s, z)
            for p, i, d, m, s, z in zip(shard["phonemes"], split("phoneme_ids", ids), split("durations", ids),
                                        split("prior_mean", ids), split("prior_log_scale", ids), split("z", frames))
        ]
        return sentences, shard["text_index"]


def extract_latents(texts: Sequence[str], folder: Path, seed: int = 0, threads: int = 2,
                    progress: bool = True, log: Callable[[str], None] | None = None) -> LatentSet:
    """Every text spoken with `piper_scales`: its sentences' durations, prior and z.

    Shards of `SHARD` texts already on disk are reused; `log` gets one line per shard written
    (a progress bar only shows on a terminal).
    """
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    speaker: PiperLatent | None = None
    sentences: list[SentenceLatent] = []
    owners: list[np.ndarray] = []
    bar = tqdm(total=len(texts), unit="text", desc="latents", file=sys.stderr,
               disable=None if progress else True, mininterval=5)
    for first in range(0, len(texts), SHARD):
        chunk = list(texts[first:first + SHARD])
        path = folder / f"shard{SHARD_FORMAT}-{first // SHARD:05d}-{_texts_hash(chunk, seed)}.npz"
        if not path.is_file():
            speaker = speaker or PiperLatent(threads)
            spoken, index = [], []
            for i, text in enumerate(chunk):
                for sentence in speaker.speak(text, piper_scales(text, seed)):
                    spoken.append(sentence)
                    index.append(i)
                bar.update(1)
            _write_shard(path, spoken, index, chunk)
            if log:
                log(f"latents: {first + len(chunk)}/{len(texts)} texts ({folder.name})")
        else:
            bar.update(len(chunk))
        found, index = _read_shard(path)
        sentences += found
        owners.append(index + first)
    bar.close()
    return LatentSet(sentences, np.concatenate(owners) if owners else np.zeros(0, np.int64), list(texts))


def training_frames(latents: LatentSet, config: CodecConfig) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per sentence, the frames the codec quantises and (prior domain) their log-scales."""
    if config.domain == "z":
        return [(s.z, None) for s in latents.sentences]
    return [s.prior_frames() for s in latents.sentences]


def training_vectors(latents: LatentSet, config: CodecConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """([N, stack * 192] float16 vectors grouped as `encode` groups them, matching log-scales or None)."""
    frames = training_frames(latents, config)
    stack = lambda x: stack_frames(torch.from_numpy(np.asarray(x, np.float32)), config.stack).half()  # noqa: E731
    vectors = torch.cat([stack(f) for f, _ in frames])
    if config.domain == "z":
        return vectors, None
    return vectors, torch.cat([stack(s) for _, s in frames])


# --- k-means --------------------------------------------------------------------------------


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # [k, D] float32
    distortion: list[float]  # mean squared error per vector element, after each iteration
    seconds: float


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to squared distance."""
    x = x.float()
    norms = (x * x).sum(1)
    centres = torch.empty(k, x.shape[1])
    best = torch.full((len(x),), float("inf"))
    done = 0
    while done < k:
        # centres are drawn in batches (1, 1, 2, 4, ... up to k/64 at once): the same D^2 weighting,
        # refreshed after every batch, at the cost of a few matrix products instead of k passes
        batch = min(k - done, max(1, done), max(1, k // 64))
        if done == 0 or best.sum() <= 0:  # first centre, or fewer distinct points than centres
            picks = torch.randint(len(x), (batch,), generator=generator)
        else:
            picks = torch.multinomial(best, batch, replacement=False, generator=generator)
        new = x[picks]
        centres[done:done + batch] = new
        distance = torch.addmm(norms[picks], x, new.T, alpha=-2.0).add_(norms[:, None]).clamp_min_(0)
        torch.minimum(best, distance.min(1).values, out=best)
        done += batch
    return centres


def assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centroid index [N], squared distance to it [N]) for vectors of any float dtype."""
    norms = (centroids * centroids).sum(1)
    index = torch.empty(len(x), dtype=torch.long)
    error = torch.empty(len(x))
    for start in range(0, len(x), chunk):
        xc = x[start:start + chunk].float()
        d, i = torch.addmm(norms, xc, centroids.T, alpha=-2.0).min(1)
        index[start:start + chunk] = i
        error[start:start + chunk] = (d + (xc * xc).sum(1)).clamp_min(0)
    return index, error


def kmeans(x: torch.Tensor, k: int, iterations: int = 20, seed: int = 0, seed_sample: int = 8,
           chunk: int = 16384, log: Callable[[str], None] | None = None) -> KMeansResult:
    """Lloyd's k-means over the rows of x (float16 or float32), seeded by k-means++ on a sample
    of `seed_sample * k` rows. Empty clusters take the worst-fitting vectors of the last pass."""
    start_time = time.perf_counter()
    if len(x) < k:
        raise ValueError(f"k-means needs at least {k} vectors, got {len(x)}")
    generator = torch.Generator().manual_seed(seed)
    sample = x[torch.randperm(len(x), generator=generator)[: seed_sample * k]]
    centroids = kmeans_plus_plus(sample, k, generator)
    history: list[float] = []
    dim = x.shape[1]
    for iteration in range(iterations):
        index, error = assign(x, centroids, chunk)
        history.append(error.mean().item() / dim)
        sums = torch.zeros(k, dim, dtype=torch.float64)
        for start in range(0, len(x), chunk):
            sums.index_add_(0, index[start:start + chunk], x[start:start + chunk].double())
        counts = torch.bincount(index, minlength=k)
        alive = counts > 0
        centroids[alive] = (sums[alive] / counts[alive, None]).float()
        dead = int((~alive).sum())
        if dead:
            worst = error.topk(dead).indices
            centroids[~alive] = x[worst].float()
        if log:
            log(f"k-means {iteration + 1}/{iterations}: distortion {history[-1]:.4f}, empty {dead}")
    _, error = assign(x, centroids, chunk)
    history.append(error.mean().item() / dim)
    return KMeansResult(centroids, history, time.perf_counter() - start_time)


def code_means(index: torch.Tensor, values: torch.Tensor, codes: int) -> torch.Tensor:
    """Mean of `values` [N, D] over the rows assigned to each code (0 for unused codes)."""
    sums = torch.zeros(codes, values.shape[1], dtype=torch.float64).index_add_(0, index, values.double())
    counts = torch.bincount(index, minlength=codes).clamp_min(1)
    return (sums / counts[:, None]).float()


def train_codec(latents: LatentSet, config: CodecConfig, iterations: int = 10, seed: int = 0,
                max_vectors: int | None = MAX_VECTORS,
                log: Callable[[str], None] | None = None) -> tuple[Codec, KMeansResult]:
    """k-means codebook for `config` over (a random subset of at most `max_vectors` of) the
    training vectors; for the prior domain each code also gets the mean log-scale of its frames."""
    vectors, log_scales = training_vectors(latents, config)
    if max_vectors and len(vectors) > max_vectors:
        pick = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(seed + 1))[:max_vectors]
        pick = pick.sort().values
        vectors = vectors[pick]
        log_scales = None if log_scales is None else log_scales[pick]
    if log:
        log(f"{config.name}: k-means over {len(vectors)} vectors of {config.vector_dim} dims")
    result = kmeans(vectors, config.codes, iterations, seed, log=log)
    code_log_scales = None
    if log_scales is not None:
        code_log_scales = code_means(assign(vectors, result.centroids)[0], log_scales, config.codes)
    return Codec(result.centroids, config, code_log_scales), result


# --- measurement ----------------------------------------------------------------------------


def _peak_normalise(audio: np.ndarray) -> np.ndarray:
    """As Piper does for every sentence it speaks."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio / peak if peak > 1e-8 else np.zeros_like(audio)


def speak_sentences(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sentences of one text, peak-normalised and joined with Piper's gap, at 22.05 kHz."""
    gap = np.zeros(int(SENTENCE_GAP_SECONDS * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    for part in parts:
        pieces += [_peak_normalise(part).astype(np.float32), gap]
    return np.concatenate(pieces[:-1]) if pieces else np.zeros(0, np.float32)


def resynthesis_wer(latents: LatentSet, codecs: dict[str, Codec], generator: Generator | None = None,
                    threads: int | None = None, progress: bool = True, wav_dir: Path | None = None) -> dict:
    """WER/CER of the reference ASR on the source audio (Piper's own: its sampled z -> generator)
    and on each codec's resynthesis (the same sentence's frames -> tokens -> decode); plus decode
    speed (x real time, whole utterances) per codec."""
    from tqdm import tqdm

    from freeze_omni.audio import SAMPLE_RATE as RATE_16K
    from freeze_omni.audio.io import resample, write_wav
    from freeze_omni.eval.metrics import error_rates
    from freeze_omni.eval.reference_asr import transcribe

    generator = generator or Generator(threads or 2)
    by_text: dict[int, list[SentenceLatent]] = {}
    for sentence, owner in zip(latents.sentences, latents.text_index):
        by_text.setdefault(int(owner), []).append(sentence)
    names = ["source", *codecs]
    hyps: dict[str, list[str]] = {name: [] for name in names}
    decode_seconds = {name: 0.0 for name in names}
    refs, rows = [], []
    audio_seconds = 0.0
    for owner in tqdm(sorted(by_text), desc="resynthesis", unit="text", file=sys.stderr,
                      disable=None if progress else True, mininterval=5):
        text = latents.texts[owner]
        refs.append(text)
        row = {"text": text}
        for name in names:
            start = time.perf_counter()
            if name == "source":
                parts = [generator(s.z.astype(np.float32)) for s in by_text[owner]]
            else:
                codec = codecs[name]
                parts = [codec.decode(codec.encode_sentence(s), seed=owner)[: s.frames * HOP] for s in by_text[owner]]
            decode_seconds[name] += time.perf_counter() - start
            audio = speak_sentences(parts)
            if name == "source":
                audio_seconds += len(audio) / SAMPLE_RATE
            if wav_dir is not None:
                write_wav(wav_dir / name / f"{owner:04d}.wav", audio, SAMPLE_RATE)
            hypothesis = transcribe(resample(audio, SAMPLE_RATE, RATE_16K), threads)
            hyps[name].append(hypothesis)
            row[name] = hypothesis
        rows.append(row)
    result = {"n": len(refs), "audio_seconds": audio_seconds, "variants": {}, "utterances": rows}
    for name in names:
        rates = error_rates(refs, hyps[name])
        result["variants"][name] = {
            "wer": rates.wer, "cer": rates.cer,
            "decode_x_realtime": audio_seconds / decode_seconds[name] if decode_seconds[name] else None,
        }
    return result
