"""`DecoderSpeaker`: the dialogue's `Speaker` backed by the speech decoder and the codec.

One phrase at a time (the turn engine hands it over as soon as the LLM has written it): its text
is phonemised, each Piper sentence in it is decoded by the AR decoder, which reads the phrase's
LLM hidden states through the NAR prefix decoder, and the codec tokens go through one streaming
codec decode per phrase. PCM packets leave as soon as the codec can decode them; the first packet
of an answer is cut smaller so speech starts early. For inference the AR step runs on ONNX Runtime
(`speaker_for_inference`, as the bundle loads it); a plain `DecoderSpeaker` steps the torch module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from freeze_omni.codec.model import Codec
from freeze_omni.codec.streaming import new_stream, stream_packet
from freeze_omni.decoder.generate import codec_tokens, start
from freeze_omni.decoder.model import SpeechDecoder
from freeze_omni.decoder.onnx_step import OnnxStep, load_onnx_step
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.decoder.targets import shared_voice_text
from freeze_omni.dialogue.speaker import Phrase


@dataclass(frozen=True)
class PacketConfig:
    # Codec tokens per decode until an answer's first PCM is out. The codec holds back 6 tokens of
    # look-ahead (the flow's context), so 12 tokens give a first packet of ~0.15 s.
    first_tokens: int = 12
    tokens: int = 20  # codec tokens per later decode (~0.46 s)
    # Return control every this many sampled tokens with an empty packet (0: only with audio). A
    # server runs one step of a generator as one unit of work; 20 tokens and a codec decode are
    # ~140 ms on one core, long enough to hold up other users' input chunks.
    work_tokens: int = 0


class DecoderSpeaker:
    def __init__(self, model: SpeechDecoder, codec: Codec, sampling: SamplingConfig = SamplingConfig(),
                 packets: PacketConfig = PacketConfig(), use_prefix: bool = True,
                 onnx_step: OnnxStep | None = None) -> None:
        self.model, self.codec, self.sampling, self.packets = model, codec, sampling, packets
        self.use_prefix = use_prefix
        self.onnx_step = onnx_step  # the AR step on ONNX Runtime (made from `model`), else the torch module
        self.sample_rate = codec.config.sample_rate
        # Instrumentation: called with the phrase when its first codec token is sampled (packets
        # need several tokens, so this is how `eval latency` sees the decoder's first token).
        self.on_first_token: Callable[[Phrase], None] | None = None

    def speak(self, phrase: Phrase) -> Iterator[np.ndarray]:
        """PCM packets (float32 at the codec's rate) of one phrase, produced lazily; with
        `packets.work_tokens`, empty packets in between mark work done with no audio ready yet."""
        hidden = phrase.hidden if self.use_prefix and phrase.hidden is not None and len(phrase.hidden) else None
        seed = self.sampling.seed + phrase.index
        stream = new_stream(seed)
        pending: list[int] = []
        size = self.packets.first_tokens if phrase.index == 0 else self.packets.tokens
        first = True
        for sentence in shared_phonemizer().sentences(phrase.text):
            state = start(self.model, sentence.ids, hidden, seed, self.onnx_step)
            for token in codec_tokens(self.model, state, self.sampling):
                if first and self.on_first_token is not None:
                    self.on_first_token(phrase)
                first = False
                pending.append(token)
                if len(pending) >= size:
                    pcm, stream = stream_packet(self.codec, stream, pending)
                    pending = []
                    if len(pcm):
                        size = self.packets.tokens
                    if len(pcm) or self.packets.work_tokens:
                        yield pcm
                elif self.packets.work_tokens and len(pending) % self.packets.work_tokens == 0:
                    yield np.zeros(0, np.float32)
        pcm, stream = stream_packet(self.codec, stream, pending, final=True)
        if len(pcm):
            yield pcm


def speaker_for_inference(model: SpeechDecoder, codec: Codec, sampling: SamplingConfig = SamplingConfig(),
                          use_prefix: bool = True, threads: int = 1, onnx: bool = True,
                          packets: PacketConfig = PacketConfig()) -> DecoderSpeaker:
    """The speaker with its AR step on ONNX Runtime (`threads` intra-op threads), exported once
    per weights into the cache; on the torch module when `onnx` is off, the model is not on the
    CPU, or the export fails (`load_onnx_step` warns). The model must not change afterwards.
    The voice's text encoder (`prior_weight`) is loaded here too, not in the first answer."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    step = load_onnx_step(model.decoder, threads) if onnx and on_cpu else None
    if sampling.prior_weight:
        shared_voice_text()
    return DecoderSpeaker(model, codec, sampling, packets, use_prefix, step)


def speak_text(speaker: DecoderSpeaker, text: str) -> Iterator[np.ndarray]:
    """The voice alone (no LLM): `text` as one phrase without hidden states."""
    import torch

    yield from speaker.speak(Phrase(text=text, token_ids=[], hidden=torch.zeros(0, 1), index=0))
