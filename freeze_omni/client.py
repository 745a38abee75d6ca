"""Python client of `freeze-omni serve` (the WebSocket protocol in docs/protocol.md).

Used by the tests and `bench serve`; also a short example of a client:

    async with await DialogueClient.connect("ws://127.0.0.1:8000/ws") as client:
        record = await client.converse(audio_16k, realtime=True)
    print(record.answer_text)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

from freeze_omni.audio import SAMPLE_RATE
from freeze_omni.audio.io import float_to_pcm16
from freeze_omni.audio.quiet import noise_floor
from freeze_omni.errors import FreezeOmniError

CHUNK_SAMPLES = SAMPLE_RATE * 160 // 1000
QUIET_S = 1.0  # after the input: no message for this long and no answer going on = nothing more to come


def quiet_tail(tail_s: float) -> np.ndarray:
    """What `converse` sends after the recording: whole chunks of a faint noise floor, the same each
    time, so an offline reference can hear exactly what the server heard."""
    return noise_floor(int(tail_s * SAMPLE_RATE / CHUNK_SAMPLES) * CHUNK_SAMPLES)


class ServerRefused(FreezeOmniError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class Received:
    at: float  # time.monotonic() when it arrived
    message: dict | bytes


@dataclass
class Conversation:
    """Everything the server sent during one `converse`, with arrival times, and when each chunk
    of input was sent (to put server events, stamped on the input clock, on the wall clock)."""

    received: list[Received] = field(default_factory=list)
    chunk_sent: list[float] = field(default_factory=list)  # monotonic time chunk i was sent
    closed_code: int | None = None

    def events(self, kind: str | None = None) -> list[dict]:
        return [r.message for r in self.received if isinstance(r.message, dict)
                and (kind is None or r.message.get("type") == kind)]

    @property
    def audio(self) -> np.ndarray:
        """The answer audio as a listener heard it: a pause drops what had not played yet (the
        server sends it again if the answer resumes)."""
        pcm = bytearray()
        for r in self.received:
            if isinstance(r.message, bytes):
                pcm += r.message
            elif r.message.get("type") == "answer_paused":
                del pcm[max(0, len(pcm) - 2 * r.message["unplayed_samples"]):]
        return np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / 32768.0

    @property
    def answer_pending(self) -> bool:
        """An answer has started and has neither finished nor been interrupted."""
        started = len(self.events("answer_started"))
        return started > len(self.events("answer_finished")) + len(self.events("interrupted"))

    @property
    def answer_text(self) -> str:
        return "".join(e["text"] for e in self.events("answer_text"))

    def sent_at(self, t_ms: float) -> float:
        """Wall time the input up to stream time `t_ms` had been sent."""
        index = max(0, min(len(self.chunk_sent) - 1, round(t_ms / 160.0) - 1))
        return self.chunk_sent[index]


class DialogueClient:
    def __init__(self, socket, ready: dict) -> None:
        self.socket = socket
        self.ready = ready

    @classmethod
    async def connect(cls, url: str, system_prompt: str | None = None, token: str | None = None,
                      seed: int | None = None, sample_rate: int = SAMPLE_RATE) -> "DialogueClient":
        """Open a session; a refusal (server full, bad token, ...) raises `ServerRefused`."""
        if token:
            url += ("&" if "?" in url else "?") + f"token={token}"
        socket = await websockets.connect(url, max_size=2 ** 22)
        hello = {"type": "hello", "sample_rate": sample_rate, "format": "pcm16"}
        if system_prompt is not None:
            hello["system_prompt"] = system_prompt
        if seed is not None:
            hello["seed"] = seed
        try:
            await socket.send(json.dumps(hello))
        except websockets.ConnectionClosed:
            pass  # refused before the hello (e.g. no token): the reason is still queued to read
        try:
            reply = json.loads(await socket.recv())
        except websockets.ConnectionClosed as closed:
            raise ServerRefused("closed", f"the server closed the connection ({closed})") from closed
        if reply.get("type") != "ready":
            await socket.close()
            raise ServerRefused(reply.get("code", "unknown"), reply.get("message", str(reply)))
        return cls(socket, reply)

    async def __aenter__(self) -> "DialogueClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.socket.close()

    async def send_audio(self, audio: np.ndarray) -> None:
        """float32 samples at 16 kHz, sent as one binary PCM16 frame."""
        await self.socket.send(float_to_pcm16(audio).astype("<i2").tobytes())

    async def converse(self, audio: np.ndarray, realtime: bool = True, tail_s: float = 3.0,
                       until: str | None = "answer_finished", timeout_s: float = 60.0) -> Conversation:
        """Stream `audio` in 160 ms chunks (paced like a microphone when `realtime`), then a faint noise
        floor for up to `tail_s` more seconds (stopping early once an `until` event arrived); collect all
        that comes back. With `until`, the reply is waited for (up to `timeout_s`): until that event,
        or until the server is quiet with no answer going on."""
        record = Conversation()
        done = asyncio.Event()
        reader = asyncio.create_task(self._read(record, done, until))
        chunks = [audio[i:i + CHUNK_SAMPLES] for i in range(0, audio.size, CHUNK_SAMPLES)]
        chunks += list(quiet_tail(tail_s).reshape(-1, CHUNK_SAMPLES))
        start = time.monotonic()
        try:
            for i, chunk in enumerate(chunks):
                if i >= audio.size / CHUNK_SAMPLES and done.is_set() or reader.done():
                    break
                if realtime:
                    await asyncio.sleep(max(0.0, start + i * 0.16 - time.monotonic()))
                await self.send_audio(chunk)
                record.chunk_sent.append(time.monotonic())
            if until is not None:
                await self._settle(record, done, time.monotonic() + timeout_s)
        except (websockets.ConnectionClosed, asyncio.TimeoutError):
            pass
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        return record

    async def _settle(self, record: Conversation, done: asyncio.Event, deadline: float) -> None:
        """Wait for `done`, or until the server has been quiet for QUIET_S with no answer going on."""
        while not done.is_set() and time.monotonic() < deadline:
            heard = len(record.received)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), min(QUIET_S, max(0.0, deadline - time.monotonic())))
            if len(record.received) == heard and not record.answer_pending:
                return
        if not done.is_set():
            raise asyncio.TimeoutError

    async def _read(self, record: Conversation, done: asyncio.Event, until: str | None) -> None:
        try:
            async for message in self.socket:
                parsed = message if isinstance(message, bytes) else json.loads(message)
                record.received.append(Received(time.monotonic(), parsed))
                if isinstance(parsed, dict) and parsed.get("type") in (until, "error") and (
                        parsed.get("type") == until or parsed.get("fatal")):
                    done.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            record.closed_code = self.socket.close_code
            done.set()
