import subprocess
import sys

import numpy as np
import pytest

from freeze_omni.audio.io import write_wav
from freeze_omni.cli import main

SUBCOMMANDS = ["chat", "serve", "train", "eval", "data", "bench"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "freeze_omni", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name} " in result.stdout


@pytest.mark.parametrize("args", [["data", "synth", "--help"], ["bench", "llm", "--help"],
                                  ["eval", "reference-asr", "--help"], ["data", "prepare-llm", "--help"]])
def test_leaf_help_works(args):
    assert run_cli(*args).returncode == 0


def test_group_without_action_shows_help_and_exits_2(capsys):
    assert main(["train"]) == 2
    assert "encoder-ctc" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["nonsense"], ["bench", "llm", "--context", "many"], ["chat"]])
def test_wrong_arguments_give_one_line_and_nonzero_exit(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "error" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [None, b"", b"not audio" * 50, b"RIFF\x24\x00\x01\x00WAVEfmt "])
def test_chat_bad_input_is_one_line_without_traceback(tmp_path, content):
    path = tmp_path / "in.wav"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("chat", str(path))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_chat_reports_missing_model_parts(tmp_path, capsys):
    write_wav(tmp_path / "q.wav", np.zeros(16000, dtype=np.float32))
    assert main(["chat", str(tmp_path / "q.wav"), "--model", str(tmp_path / "half-trained")]) == 2
    assert "encoder.safetensors" in capsys.readouterr().err
