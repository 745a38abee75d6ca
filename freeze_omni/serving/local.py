"""Run the ASGI app on a free loopback port inside the current event loop (tests, `bench serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn

from freeze_omni.serving.app import UVICORN_SETTINGS


@contextlib.asynccontextmanager
async def serving(app, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Yields the base URL (http://host:port); the server stops when the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **UVICORN_SETTINGS))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # uvicorn offers no startup event to wait on
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
