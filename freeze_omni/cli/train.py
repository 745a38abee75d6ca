"""`freeze-omni train STAGE`: one subcommand per training stage (each lands with its issue)."""

from freeze_omni.cli import add_group, add_leaf, pending

STAGES = {
    "encoder-ctc": ("input stage 1: streaming encoder with CTC", "issue #8"),
    "encoder-llm": ("input stage 2: encoder + adapter into the frozen LLM", "issue #8"),
    "encoder-qa": ("input stage 3: spoken QA self-distillation + state head", "issue #5"),
    "codec": ("output stage 1: single-codebook codec", "issue #9"),
    "decoder-tts": ("output stage 2: AR speech decoder on text-speech pairs", "issue #9"),
    "decoder-prefix": ("output stage 3: NAR prefix decoder on LLM hidden states", "issue #9"),
}


def register(commands) -> None:
    stages = add_group(commands, "train", "train one stage of the model", "STAGE")
    for name, (help, owner) in STAGES.items():
        add_leaf(stages, name, help, pending(f"lands with {owner}"))
