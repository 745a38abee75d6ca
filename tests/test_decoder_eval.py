"""`eval speech-out` and `bench speech-out` on a tiny decoder and codec: report keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_hf_model
from freeze_omni.cli import main
from freeze_omni.codec.model import Codec, CodecConfig
from freeze_omni.decoder.model import DecoderConfig, SpeechDecoder
from freeze_omni.decoder.phonemes import shared_phonemizer
from freeze_omni.decoder.sampling import SamplingConfig
from freeze_omni.decoder.weights import save_decoder
from freeze_omni.dialogue.phrases import PhraseRule
from freeze_omni.eval import reference_asr
from freeze_omni.eval.speech_out import evaluate_speech_out
from freeze_omni.llm import FrozenLLM

pytestmark = pytest.mark.usefixtures("one_thread")
CODES = 16


def _decoder(llm_hidden: int) -> SpeechDecoder:
    """A decoder that says about one token per phoneme id: top-2 is always {code 3, ADVANCE/STOP}."""
    torch.manual_seed(0)
    model = SpeechDecoder(DecoderConfig(codes=CODES, phoneme_symbols=shared_phonemizer().symbols,
                                        llm_hidden=llm_hidden, dim=16, heads=2, encoder_layers=1,
                                        decoder_layers=1, prefix_layers=1, dropout=0.0)).eval()
    head = model.decoder.head
    with torch.no_grad():  # code 3 scores 0.5 * |v|^2 = 5, the rest 0; ADVANCE and STOP 5
        vector = torch.full((head.codebook.shape[1],), (10.0 / head.codebook.shape[1]) ** 0.5)
        head.codebook.zero_()
        head.codebook[3] = vector
        head.query.weight.zero_()
        head.query.bias.copy_(vector)
        head.control.weight.zero_()
        head.control.bias.fill_(5.0)
        head.log_scale.zero_()
    return model


@pytest.fixture(scope="module")
def codec():
    config = CodecConfig(codes=CODES)
    return Codec(torch.randn(CODES, config.vector_dim, generator=torch.Generator().manual_seed(0)) * 0.5, config,
                 torch.full((CODES, config.vector_dim), -1.0))


def test_eval_report_with_and_without_prefix(codec):
    llm = FrozenLLM.from_hf_model(*tiny_hf_model("llama"))
    texts = ["Hello there.", "Good night."]
    report = evaluate_speech_out(texts, _decoder(llm.hidden_size), codec, [1, 2], llm, threads=1, floors=False)
    assert report["prefix"] and report["n"] == 2 and set(report["by_top_k"]) == {"1", "2"}
    assert set(report["by_top_k_no_prefix"]) == {"1", "2"}
    assert report["wer"] == min(v["wer"] for v in report["by_top_k"].values())
    assert report["best_top_k"] in (1, 2) and {"top1_prefix", "top2_no_prefix"} <= set(report["utterances"][0])


def test_the_pace_is_reported_and_sets_the_length_of_the_speech(codec):
    decoder = _decoder(8)  # greedy, it holds code 3 until the length guard (ADVANCE ties with it)
    texts = ["Hello there, how are you?"]
    normal, fast = (evaluate_speech_out(texts, decoder, codec, [1], threads=1, floors=False,
                                        sampling=SamplingConfig(pace_bias=bias))
                    for bias in (0.0, 1.0))
    assert (normal["pace_bias"], fast["pace_bias"]) == (0.0, 1.0)
    assert fast["by_top_k"]["1"]["audio_seconds"] < normal["by_top_k"]["1"]["audio_seconds"]


def test_eval_and_bench_commands(codec, tmp_path, capsys):
    decoder = save_decoder(_decoder(8), tmp_path / "decoder.safetensors")
    codec_path = codec.save(tmp_path / "codec.safetensors")
    texts = tmp_path / "texts.txt"
    texts.write_text("Good night.\n\n")
    assert main(["eval", "speech-out", "--texts", str(texts), "--top-k", "1", "--no-prefix", "--decoder", str(decoder),
                 "--codec", str(codec_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"wer", "cer", "by_top_k", "resynthesis_wer", "source_wer", "n"} <= set(report) and report["n"] == 1
    assert not report["prefix"] and 0 <= report["source_wer"] <= 1  # Piper's own audio of a short sentence
    assert report["prior_weight"] == SamplingConfig.prior_weight
    assert main(["bench", "speech-out", "--decoder", str(decoder), "--codec", str(codec_path), "--repeats", "1",
                 "--prior-weight", "0", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["first_packet_ms"] > 0 and bench["rtf"] > 0 and bench["phrases"] == 5 and bench["prior_weight"] == 0
    assert bench["step"] == "onnx" and report["step"] == "onnx"  # inference runs the AR step on ONNX Runtime
    assert main(["eval", "speech-out", "--texts", str(tmp_path / "missing.txt"), "--no-prefix"]) == 1
    for weight in ("-1", "inf", "nan"):
        with pytest.raises(SystemExit):
            main(["eval", "speech-out", "--texts", str(texts), "--prior-weight", weight])
        assert "expected a finite number >= 0" in capsys.readouterr().err


def test_in_phrases_each_phrase_is_spoken_on_its_own_with_its_hidden_states(codec, monkeypatch):
    from freeze_omni.decoder import speech

    llm = FrozenLLM.from_hf_model(*tiny_hf_model("llama"))
    spoken = []
    synthesize = speech.synthesize

    def spy(model, codec, text, sampling, hidden=None, onnx_step=None):
        spoken.append((text, sampling.seed, None if hidden is None else hidden.shape[0]))
        return synthesize(model, codec, text, sampling, hidden, onnx_step)

    monkeypatch.setattr(speech, "synthesize", spy)
    monkeypatch.setattr(reference_asr, "transcribe", lambda audio, threads=None: "")  # only what is spoken counts
    text = "Well then, the capital of France is Paris."
    report = evaluate_speech_out([text], _decoder(llm.hidden_size), codec, [1], llm, threads=1, floors=False,
                                 phrases=PhraseRule(first_words=2))
    assert report["phrases"]["first_words"] == 2
    in_phrases = [s for s in spoken if s[2] is not None]
    assert len(in_phrases) >= 2 and [seed for _, seed, _ in in_phrases] == list(range(len(in_phrases)))
    assert in_phrases[0][0].split() == ["Well", "then,"]  # the first phrase ends after its first two words
    assert " ".join("".join(t for t, _, _ in in_phrases).split()) == text
    assert sum(n for _, _, n in in_phrases) == len(llm.tokenizer.encode(text, add_special_tokens=False))
    assert [(t, s) for t, s, n in spoken if n is None] == [(text, 0)]  # without the prefix: the whole text


def test_speaking_in_phrases_needs_the_llm(codec):
    with pytest.raises(ValueError, match="LLM"):
        evaluate_speech_out(["Hello."], _decoder(8), codec, [1], None, threads=1, floors=False, phrases=PhraseRule())
