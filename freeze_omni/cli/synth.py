"""Placeholder until its owner module lands."""

from freeze_omni.cli import add_leaf, pending


def register(commands) -> None:
    add_leaf(commands, "synth", "in progress", pending("in progress"))
