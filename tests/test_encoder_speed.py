import json

import pytest
import torch

from freeze_omni.adapter import Adapter, AdapterConfig
from freeze_omni.cli import CommandParser, bench_encoder
from freeze_omni.encoder import EncoderConfig, SpeechEncoder
from freeze_omni.encoder.speed import measure_encoder_speed


def test_speed_report_times_whole_chunks_after_the_context():
    encoder = SpeechEncoder(EncoderConfig("whisper", n_mels=80, dim=32, heads=2, layers=1, ffn_dim=64)).eval()
    adapter = Adapter(AdapterConfig.for_encoder(encoder.config, 40)).eval()
    speed = measure_encoder_speed(encoder, adapter, chunk_size=8, left_chunks=2, context_s=1.0, repeats=5, warmup=1)
    assert speed.chunk_ms == 160.0
    assert speed.context_s == pytest.approx(0.96)
    assert 0 < speed.encoder_ms and 0 < speed.adapter_ms and speed.step_ms_per_chunk <= speed.step_ms_per_chunk_p95


@pytest.mark.parametrize("vocabulary", [0, 30])
def test_bench_command_prints_one_json_object(capsys, vocabulary):
    parser = CommandParser(prog="freeze-omni bench")
    bench_encoder.register(parser.add_subparsers(dest="what", parser_class=CommandParser))
    args = parser.parse_args(["encoder", "--encoder", "scratch", "--llm-hidden-size", "48", "--context", "0.5",
                              "--repeats", "3", "--vocabulary", str(vocabulary), "--json"])
    threads = torch.get_num_threads()
    try:
        assert args.run(args) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(capsys.readouterr().out)
    assert (result["encoder"], result["llm_hidden_size"], result["chunk_size"], result["threads"]) == ("scratch", 48, 4, 1)
    assert result["vocabulary"] == vocabulary and result["step_ms_per_chunk"] > 0 and 0 < result["rtf"] < 1


def test_bench_command_refuses_a_negative_vocabulary(capsys):
    parser = CommandParser(prog="freeze-omni bench")
    bench_encoder.register(parser.add_subparsers(dest="what", parser_class=CommandParser))
    with pytest.raises(SystemExit):
        parser.parse_args(["encoder", "--vocabulary", "-3"])
    assert "expected an integer >= 0" in capsys.readouterr().err
