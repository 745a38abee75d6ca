"""Issue #8's evaluation sets: exact SNR, valid manifests and audio, an engine no training uses."""

import json

import numpy as np
import pytest
import soundfile as sf

from freeze_omni.audio.io import read_audio, write_wav
from freeze_omni.cli import main
from freeze_omni.data import augment, flite
from freeze_omni.data.eval_sets import (
    CLEAN_SET, HUMAN_SET, SUMMARY, EvalSetsConfig, active_snr_db, build_eval_sets, choose_sentences,
    held_out_sentences, mix_at_snr, noisy_set_name,
)
from freeze_omni.data.human import parse_sphinx_transcription, pocketsphinx_recordings
from freeze_omni.data.plan import text_split
from freeze_omni.data.texts import TextItem
from freeze_omni.data.voices import ENGINES, VOICES
from freeze_omni.errors import ModelNotFoundError
from freeze_omni.eval.manifest import read_speech_manifest

SR = 16000
TEXTS = (
    TextItem("What is the capital of France?", "question", "test"),
    TextItem("The train leaves at half past seven.", "statement", "test"),
    TextItem("Please call me back tomorrow morning.", "statement", "test"),
    TextItem("How many legs does a spider have?", "question", "test"),
    TextItem("My sister lives near the old harbour.", "statement", "test"),
)


def padded_speech(seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """A speech-like tone with pauses, padded with 0.3 s of silence; its active span."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    voice = sum(np.sin(2 * np.pi * 130 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    speech = (0.1 * voice * np.clip(np.sin(2 * np.pi * 2 * t), 0.05, None)).astype(np.float32)
    pad = int(0.3 * SR)
    return augment.pad_silence(speech, 0.3, 0.3), (pad, pad + speech.size)


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_mixing_hits_the_snr_on_active_speech_within_0_1_db(color, snr_db, tmp_path):
    clean, span = padded_speech()
    noisy = mix_at_snr(clean, augment.NOISES[color](clean.size, np.random.default_rng(3)), snr_db, span)
    assert abs(active_snr_db(clean, noisy - clean, span) - snr_db) < 0.01
    # still within 0.1 dB once both are PCM16 files, the form `eval asr` reads
    write_wav(tmp_path / "clean.wav", clean)
    write_wav(tmp_path / "noisy.wav", noisy)
    clean16, noisy16 = read_audio(tmp_path / "clean.wav"), read_audio(tmp_path / "noisy.wav")
    assert abs(active_snr_db(clean16, noisy16 - clean16, span) - snr_db) < 0.1
    # the whole-file figure would be lower: the padding holds noise but no speech
    assert active_snr_db(clean, noisy - clean, (0, clean.size)) < snr_db - 0.5


def test_mixing_refuses_mismatched_noise_or_no_speech():
    clean, span = padded_speech()
    with pytest.raises(ValueError):
        mix_at_snr(clean, np.ones(10, np.float32), 10.0, span)
    with pytest.raises(ValueError):
        mix_at_snr(clean, np.ones_like(clean), 10.0, (5, 5))


def test_unseen_synthesizer_is_not_a_training_engine():
    assert flite.ENGINE not in ENGINES
    assert all(voice.engine != flite.ENGINE for voice in VOICES)
    assert not {v.id for v in flite.VOICES} & {v.id for v in VOICES}


def test_held_out_sentences_come_from_the_test_split_only():
    items = held_out_sentences()
    assert len(items) > 300 and all(text_split(item.text) == "test" for item in items)
    chosen = choose_sentences(items, 100, seed=0)
    assert len(chosen) == 100 and len({c.text for c in chosen}) == 100
    assert all(c.kind != "filler" for c in chosen)
    assert chosen == choose_sentences(items, 100, seed=0) != choose_sentences(items, 100, seed=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-sets")
    summary = build_eval_sets(EvalSetsConfig(out_dir=out, limit=len(TEXTS), texts=TEXTS))
    return out, summary


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manifests_point_at_16_khz_mono_files_with_text(built):
    out, summary = built
    names = [CLEAN_SET, noisy_set_name(10.0), HUMAN_SET]
    assert set(summary["sets"]) == set(names) and (out / SUMMARY).is_file()
    for name in names:
        items = read_speech_manifest(out / f"{name}.jsonl")  # the reader `eval asr` uses
        assert len(items) == summary["sets"][name]["utterances"] > 0
        for item in items:
            assert item.text.strip()
            info = sf.info(str(item.audio))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert info.frames / 16000 == pytest.approx(item.extra["duration"], abs=1e-3)


def test_unseen_set_uses_every_flite_voice_and_noisy_copy_is_at_10_db(built):
    out, _ = built
    clean_rows, noisy_rows = rows(out / f"{CLEAN_SET}.jsonl"), rows(out / f"{noisy_set_name(10.0)}.jsonl")
    assert sorted(r["text"] for r in clean_rows) == sorted(t.text for t in TEXTS)
    assert {r["voice"] for r in clean_rows} == {v.id for v in flite.VOICES}
    assert {r["engine"] for r in clean_rows} == {"flite"}
    for clean_row, noisy_row in zip(clean_rows, noisy_rows, strict=True):
        assert clean_row["id"] == noisy_row["id"] and noisy_row["snr_db"] == 10.0
        clean, noisy = read_audio(out / clean_row["audio"]), read_audio(out / noisy_row["audio"])
        span = (round(clean_row["speech_start"] * SR), round(clean_row["speech_end"] * SR))
        assert abs(active_snr_db(clean, noisy - clean, span) - 10.0) < 0.1
        assert abs(augment.rms_db(clean[span[0]: span[1]]) - augment.REFERENCE_DBFS) < 0.5


def test_human_set_has_transcripts_and_provenance(built):
    out, summary = built
    human = rows(out / f"{HUMAN_SET}.jsonl")
    assert len(human) == 11 and summary["sets"][HUMAN_SET]["seconds"] > 30
    assert {r["collection"] for r in human} == {"librivox", "cards", "goforward"}
    for row in human:
        assert len(row["text"].split()) >= 2 and row["text"] == row["text"].lower()
        assert row["licence"] and row["transcript_source"].startswith("debian:pocketsphinx-testdata")
    assert {"go forward ten meters", "he was not an ill disposed young man"} <= {r["text"] for r in human}


def test_sphinx_transcription_parser():
    text = "<s> ten of clubs  </s> (001)\n\n<s> five five </s> (004)\n"
    assert parse_sphinx_transcription(text) == {"001": "ten of clubs", "004": "five five"}
    with pytest.raises(ValueError):
        parse_sphinx_transcription("<s> no id here </s>\n")


def test_missing_recordings_or_flite_give_one_clear_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ModelNotFoundError, match="pocketsphinx-testdata"):
        pocketsphinx_recordings(tmp_path)
    monkeypatch.setattr(flite.shutil, "which", lambda name: None)
    assert main(["data", "eval-sets", "--out", str(tmp_path / "sets"), "--limit", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "flite is not installed" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sets").exists()  # checked before anything is written
