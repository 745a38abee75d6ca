"""Placeholder until its owner module lands."""

from freeze_omni.cli import add_leaf, pending


def register(commands) -> None:
    add_leaf(commands, "reference_asr", "in progress", pending("in progress"))
