"""`freeze-omni train codec` end to end on a few sentences: latents cached, codebook, WER, resume."""

import json

import pytest

from freeze_omni.cli import build_parser
from freeze_omni.codec.model import Codec, read_metadata


def run(argv):
    args = build_parser().parse_args(["train", "codec", *argv])
    return args.run(args)


def test_train_codec_tiny_run_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FREEZE_OMNI_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    argv = ["--sentences", "3", "--codes", "8", "--stack", "2", "--iterations", "2",
            "--threads", "2", "--out", str(out), "--json"]
    assert run([*argv, "--eval-sentences", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 1 and report["train_sentences"] == 3 and report["best_variant"] == "prior-8x2"
    assert 0 <= report["source_wer"] and 0 <= report["resynthesis_wer"]
    codec = Codec.load(out / "codec-prior-8x2.safetensors")
    assert codec.config.codes == 8 and codec.config.stack == 2 and codec.config.domain == "prior"
    assert "wer" in json.loads(read_metadata(out / "codec-prior-8x2.safetensors")["training"])
    shards = list((tmp_path / "data" / "codec" / "latents" / "train-seed0").glob("shard*.npz"))
    assert len(shards) == 1

    # a second run reuses the latents and the codebook
    before = shards[0].stat().st_mtime_ns
    assert run([*argv, "--eval-sentences", "0"]) == 0
    assert "reusing" in capsys.readouterr().err
    assert shards[0].stat().st_mtime_ns == before


def test_install_needs_one_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("FREEZE_OMNI_DATA", str(tmp_path))
    from freeze_omni.errors import FreezeOmniError

    with pytest.raises(FreezeOmniError):
        run(["--variants", "8x2,16x2", "--install", "--sentences", "1"])


@pytest.mark.parametrize("bad", [["--codes", "0"], ["--codes", "a"], ["--stack", ""], ["--sentences", "-2"],
                                 ["--variants", "8x"], ["--variants", "0x2"], ["--variants", "mel:8x2"],
                                 ["--domain", "mel"]])
def test_bad_arguments_exit_with_one_line(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(bad)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
