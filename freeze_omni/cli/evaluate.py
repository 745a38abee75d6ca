"""`freeze-omni eval ...`: measurements that print numbers and write JSON + Markdown reports."""

from freeze_omni.cli import add_group, add_leaf, pending

PENDING = {
    "latency": ("per-stage latency from end of speech to first audio packet", "issue #5"),
}


def register(commands) -> None:
    subs = add_group(commands, "eval", "evaluate a model and write a report", "WHAT")
    from freeze_omni.cli import eval_asr, eval_dialogue, eval_speech_out, reference_asr

    eval_asr.register(subs)
    reference_asr.register(subs)
    eval_speech_out.register(subs)
    eval_dialogue.register(subs)
    for name, (help, owner) in PENDING.items():
        add_leaf(subs, name, help, pending(f"lands with {owner}"))
