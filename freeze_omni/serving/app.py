"""HTTP + WebSocket front of the model server (Starlette): the web page, `/ws`, `/health`, `/metrics`.

Only IO lives here. Per user, two tasks joined by the connection's bounded outbox (the moshi
server's shape): the receiver checks frames (`protocol.py`) and feeds the scheduler, the
sender writes events and audio. The connection ends when the client leaves, says bye, breaks
the protocol fatally, or the server ends it (idle, memory, slow reader, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from importlib.resources import files

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from freeze_omni.serving.protocol import (MAX_FRAME_BYTES, ProtocolError, error_message, parse_audio, parse_hello,
                                          parse_text, ready_message)
from freeze_omni.serving.runner import Connection, ModelServer
from freeze_omni.serving.scheduler import QueueFull
from freeze_omni.serving.store import ServerFull

WEB_DIR = files("freeze_omni.serving") / "web"
HELLO_TIMEOUT_S = 10.0
FLUSH_TIMEOUT_S = 2.0
POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013
# uvicorn refuses (closes with 1009) any WebSocket message above this before buffering more of it;
# frames between MAX_FRAME_BYTES and it get a non-fatal `frame_too_large` error.
UVICORN_SETTINGS = {"ws_max_size": 4 * MAX_FRAME_BYTES, "ws_ping_interval": 20.0, "ws_ping_timeout": 20.0}


def create_app(server: ModelServer, token: str | None = None) -> Starlette:
    def authorised(scope_query: dict, headers) -> bool:
        if token is None:
            return True
        given = scope_query.get("token") or headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), token.encode())

    async def index(request: Request) -> Response:
        return FileResponse(str(WEB_DIR / "index.html"))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "users": len(server.store), "max_users": server.store.max_users,
                             "replicas": len(server.replicas)})

    async def metrics(request: Request) -> Response:
        if not authorised(request.query_params, request.headers):
            return PlainTextResponse("unauthorised\n", status_code=401)
        text = server.metrics.render(len(server.store), server.store.max_users, len(server.replicas),
                                     server.busy_replicas, server.store.memory_bytes())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        if not authorised(ws.query_params, ws.headers):
            server.metrics.refused["unauthorised"] += 1
            return await _refuse(ws, error_message("unauthorised", "a valid access token is required", fatal=True))
        try:
            hello = parse_hello(await _first_text(ws))
            connection = await server.connect(hello.system_prompt, hello.seed)
        except ProtocolError as error:
            server.metrics.refused[error.code] += 1
            return await _refuse(ws, error.message())
        except ServerFull as error:
            server.metrics.refused["server_full"] += 1
            return await _refuse(ws, error_message("server_full", str(error), fatal=True), TRY_AGAIN_LATER)
        except WebSocketDisconnect:
            return
        try:
            await ws.send_json(ready_message(connection.session_id, server.output_sample_rate))
        except Exception:  # gone already: free the session
            server.disconnect(connection, "client")
            return
        await _serve(ws, server, connection)

    return Starlette(
        routes=[Route("/", index), Route("/health", health), Route("/metrics", metrics),
                WebSocketRoute("/ws", websocket), Mount("/static", StaticFiles(directory=str(WEB_DIR)))],
        lifespan=lambda app: _lifespan(server),
    )


@contextlib.asynccontextmanager
async def _lifespan(server: ModelServer):
    await server.start()
    try:
        yield
    finally:
        await server.stop()


async def _first_text(ws: WebSocket) -> str | None:
    try:
        message = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ProtocolError("bad_hello", f"no hello within {HELLO_TIMEOUT_S:.0f} s", fatal=True) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message.get("text")


async def _refuse(ws: WebSocket, message: dict, code: int = POLICY_VIOLATION) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json(message)
        await ws.close(code, message["code"])


async def _serve(ws: WebSocket, server: ModelServer, connection: Connection) -> None:
    sender = asyncio.create_task(_send_loop(ws, connection))
    receiver = asyncio.create_task(_receive_loop(ws, server, connection))
    closed = asyncio.create_task(connection.closed.wait())
    try:
        await asyncio.wait([receiver, closed, sender], return_when=asyncio.FIRST_COMPLETED)
    finally:
        receiver.cancel()
        closed.cancel()
        server.disconnect(connection, connection.close_reason or "client")
        reason = connection.close_reason
        if reason != "slow_reader" and not sender.done():  # let the client read why, briefly
            with contextlib.suppress(asyncio.QueueFull):
                connection.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sender, FLUSH_TIMEOUT_S)
        sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(1000 if reason in ("client", "bye") else POLICY_VIOLATION, reason or ""),
                                   FLUSH_TIMEOUT_S)


async def _receive_loop(ws: WebSocket, server: ModelServer, connection: Connection) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            connection.end("client")
            return
        try:
            if message.get("bytes") is not None:
                server.feed(connection, parse_audio(message["bytes"]))
            elif parse_text(message.get("text") or "") == "bye":
                connection.end("bye")
                return
        except ProtocolError as error:
            connection.send(error.message())
        except QueueFull as error:
            connection.send(error_message("too_far_behind", str(error), fatal=True))
            connection.end("too_far_behind")
            return


async def _send_loop(ws: WebSocket, connection: Connection) -> None:
    """Until the None that closing puts behind the last message."""
    while (message := await connection.outbox.get()) is not None:
        await _send(ws, message)


async def _send(ws: WebSocket, message: dict | bytes) -> None:
    if isinstance(message, bytes):
        await ws.send_bytes(message)
    else:
        await ws.send_json(message)
