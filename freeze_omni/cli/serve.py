"""`freeze-omni serve`: model as a server (lands with the serving issue)."""

from freeze_omni.cli import add_leaf, pending


def register(commands) -> None:
    add_leaf(commands, "serve", "serve the model to browsers and clients over WebSocket",
             pending("the model server lands with issue #6"))
