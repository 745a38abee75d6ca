"""`freeze-omni data ...`: build the speech corpora the training stages read."""

from freeze_omni.cli import add_group


def register(commands) -> None:
    subs = add_group(commands, "data", "build training and test corpora", "WHAT")
    from freeze_omni.cli import eval_sets, prepare_llm, synth

    synth.register(subs)
    prepare_llm.register(subs)
    eval_sets.register(subs)
