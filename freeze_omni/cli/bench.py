"""`freeze-omni bench ...`: speed measurements on this machine."""

from freeze_omni.cli import add_group


def register(commands) -> None:
    subs = add_group(commands, "bench", "measure speed on this machine", "WHAT")
    from freeze_omni.cli import bench_encoder, bench_llm, bench_serve, bench_speech_out

    bench_llm.register(subs)
    bench_encoder.register(subs)
    bench_serve.register(subs)
    bench_speech_out.register(subs)
