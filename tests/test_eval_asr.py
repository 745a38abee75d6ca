import numpy as np
import torch

from freeze_omni.audio.io import read_audio
from freeze_omni.eval.asr import Recognizer, evaluate_asr


def _frames(audio: np.ndarray) -> torch.Tensor:
    """A stand-in feature: the raw samples, 160 to a frame."""
    return torch.from_numpy(audio[: audio.size // 160 * 160].reshape(-1, 160).copy())


def test_a_lead_puts_that_much_silence_before_each_file(tiny_corpus):
    heard = []

    def transcribe(feats, lengths, chunk, left):
        heard.append(feats[0, : int(lengths[0])].clone())
        return ["hello"]

    report = evaluate_asr(tiny_corpus / "dev.jsonl", Recognizer("tokens", _frames, 16, transcribe), limit=2, lead_ms=480)
    first = read_audio(tiny_corpus / "dev" / "0.wav")
    assert report["lead_ms"] == 480 and heard[0].shape[0] == (first.size + 7680) // 160
    assert not heard[0][:48].any() and np.allclose(heard[0][48:].numpy().ravel(), first[: first.size // 160 * 160])
