"""`DecoderSpeaker`: the dialogue's `Speaker` backed by the speech decoder and the codec.

One phrase at a time (the turn engine hands it over as soon as the LLM has written it): its text
is phonemised, each Piper sentence in it is decoded by the AR decoder, which reads the phrase's
LLM hidden states through the NAR prefix decoder, and the codec tokens go through one streaming
codec decode per phrase. PCM packets leave as soon as the codec can decode them; the first packet
of an answer is cut smaller so speech starts early.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from freeze_omni.codec.model import Codec
from freeze_omni.codec.streaming import new_stream, stream_packet
from freeze_omni.decoder.generate import codec_tokens, start
from freeze_omni.decoder.model import SpeechDecoder
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.dialogue.speaker import Phrase


@dataclass(frozen=True)
class PacketConfig:
    # Codec tokens per decode until an answer's first PCM is out. The codec holds back 6 tokens of
    # look-ahead (the flow's context), so 12 tokens give a first packet of ~0.15 s.
    first_tokens: int = 12
    tokens: int = 20  # codec tokens per later decode (~0.46 s)


class DecoderSpeaker:
    def __init__(self, model: SpeechDecoder, codec: Codec, sampling: SamplingConfig = SamplingConfig(),
                 packets: PacketConfig = PacketConfig(), use_prefix: bool = True) -> None:
        self.model, self.codec, self.sampling, self.packets = model, codec, sampling, packets
        self.use_prefix = use_prefix
        self.sample_rate = codec.config.sample_rate

    def speak(self, phrase: Phrase) -> Iterator[np.ndarray]:
        """PCM packets (float32 at the codec's rate) of one phrase, produced lazily."""
        hidden = phrase.hidden if self.use_prefix and phrase.hidden is not None and len(phrase.hidden) else None
        seed = self.sampling.seed + phrase.index
        stream = new_stream(seed)
        pending: list[int] = []
        size = self.packets.first_tokens if phrase.index == 0 else self.packets.tokens
        for sentence in shared_phonemizer().sentences(phrase.text):
            state = start(self.model, sentence.ids, hidden, seed)
            for token in codec_tokens(self.model, state, self.sampling):
                pending.append(token)
                if len(pending) >= size:
                    pcm, stream = stream_packet(self.codec, stream, pending)
                    pending = []
                    if len(pcm):
                        size = self.packets.tokens
                        yield pcm
        pcm, stream = stream_packet(self.codec, stream, pending, final=True)
        if len(pcm):
            yield pcm


def speak_text(speaker: DecoderSpeaker, text: str) -> Iterator[np.ndarray]:
    """The voice alone (no LLM): `text` as one phrase without hidden states."""
    import torch

    yield from speaker.speak(Phrase(text=text, token_ids=[], hidden=torch.zeros(0, 1), index=0))
