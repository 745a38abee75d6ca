"""`freeze-omni eval ...`: measurements that print numbers and write JSON + Markdown reports."""

from freeze_omni.cli import add_group


def register(commands) -> None:
    subs = add_group(commands, "eval", "evaluate a model and write a report", "WHAT")
    from freeze_omni.cli import eval_asr, eval_dialogue, eval_speech_out, reference_asr

    eval_asr.register(subs)
    reference_asr.register(subs)
    eval_speech_out.register(subs)
    eval_dialogue.register(subs)
