"""DecoderSpeaker and `freeze-omni say`: streamed packets equal a whole decode, first packet small."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freeze_omni.cli import main
from freeze_omni.codec.model import Codec, CodecConfig
from freeze_omni.decoder.generate import speak_ids
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.decoder.speaker import DecoderSpeaker, PacketConfig, speak_text
from freeze_omni.decoder.weights import save_decoder
from freeze_omni.dialogue.speaker import Phrase

pytestmark = pytest.mark.usefixtures("one_thread")
CODES = 16


@pytest.fixture(scope="module")
def parts():
    generator = torch.Generator().manual_seed(0)
    config = CodecConfig(codes=CODES)
    codec = Codec(torch.randn(CODES, config.vector_dim, generator=generator) * 0.5, config,
                  torch.full((CODES, config.vector_dim), -1.0))
    torch.manual_seed(0)
    model = SpeechDecoder(DecoderConfig(codes=CODES, phoneme_symbols=shared_phonemizer().symbols, llm_hidden=8,
                                        dim=32, heads=4, encoder_layers=1, decoder_layers=1, prefix_layers=1,
                                        dropout=0.0)).eval()
    return model, codec


def test_packets_join_into_the_whole_decode(parts):
    model, codec = parts
    sampling = SamplingConfig(top_k=3, max_tokens_per_phoneme=3, seed=5)
    speaker = DecoderSpeaker(model, codec, sampling, PacketConfig(first_tokens=12, tokens=24))
    text = "Hi there. Good to see you."
    hidden = torch.randn(4, 8)
    packets = list(speaker.speak(Phrase(text, [1, 2, 3, 4], hidden, index=0)))
    tokens = np.concatenate([speak_ids(model, s.ids, sampling, hidden) for s in shared_phonemizer().sentences(text)])
    whole = codec.decode(tokens, seed=sampling.seed)
    streamed = np.concatenate(packets)
    assert len(packets) >= 3 and streamed.shape == whole.shape
    assert np.sum((streamed - whole) ** 2) < 1e-2 * np.sum(whole ** 2)
    assert len(packets[0]) < len(packets[1])  # the first packet of an answer is cut small


def test_work_slices_only_add_empty_packets_between_the_same_audio(parts):
    model, codec = parts
    sampling = SamplingConfig(top_k=3, max_tokens_per_phoneme=3, seed=5)
    phrase = Phrase("Hi there. Good to see you.", [1, 2, 3, 4], torch.randn(4, 8), index=0)
    whole = list(DecoderSpeaker(model, codec, sampling, PacketConfig(12, 24)).speak(phrase))
    sliced = list(DecoderSpeaker(model, codec, sampling, PacketConfig(12, 24, work_tokens=4)).speak(phrase))
    audio = [p for p in sliced if p.size]
    assert len(sliced) >= 2 * len(whole) and len(audio) == len(whole)
    assert all(np.array_equal(a, b) for a, b in zip(audio, whole))


def test_later_phrases_use_full_packets_and_prefix_matters(parts):
    model, codec = parts
    torch.nn.init.normal_(model.prefix.values.weight)
    sampling = SamplingConfig(top_k=1, max_tokens_per_phoneme=3)
    text = "Good to see you again."
    packets = PacketConfig(first_tokens=12, tokens=24)
    with_prefix = DecoderSpeaker(model, codec, sampling, packets)
    plain = DecoderSpeaker(model, codec, sampling, packets, use_prefix=False)
    hidden = torch.randn(3, 8)
    first = list(with_prefix.speak(Phrase(text, [1], hidden, index=0)))
    later = list(with_prefix.speak(Phrase(text, [1], hidden, index=1)))
    assert len(later[0]) > len(first[0])
    alone = np.concatenate(list(speak_text(plain, text)))
    assert not np.array_equal(np.concatenate(later), alone)


def test_say_writes_a_wav(parts, tmp_path):
    from freeze_omni.audio.io import read_audio

    model, codec = parts
    decoder_path = save_decoder(model, tmp_path / "decoder.safetensors")
    codec_path = codec.save(tmp_path / "codec.safetensors")
    out = tmp_path / "out.wav"
    assert main(["say", "Hello.", "-o", str(out), "--decoder", str(decoder_path), "--codec", str(codec_path)]) == 0
    assert read_audio(out).size > 0
    assert main(["say", "  ", "-o", str(out), "--decoder", str(decoder_path), "--codec", str(codec_path)]) == 1


def test_the_first_codec_token_of_each_phrase_is_reported_before_its_first_packet(parts):
    model, codec = parts
    speaker = DecoderSpeaker(model, codec, SamplingConfig(top_k=1, max_tokens_per_phoneme=3),
                             PacketConfig(first_tokens=12, tokens=24))
    seen = []
    speaker.on_first_token = seen.append
    phrase = Phrase("Good to see you. Hi there.", [1], torch.randn(2, 8), index=0)
    packets = speaker.speak(phrase)
    assert seen == []  # lazily: nothing is decoded before the first packet is asked for
    next(packets)
    assert seen == [phrase]
    list(packets)
    assert seen == [phrase]  # once per phrase, not per sentence
