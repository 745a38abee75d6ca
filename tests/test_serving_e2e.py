"""The model server end to end over loopback WebSocket, on the tiny random models of the dialogue
tests: answers reach their own user (compared with an offline replay of the same audio), and bad
input, overload and disconnects cost nobody else anything."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import weakref

import numpy as np
import pytest
import websockets

from dialogue_support import ANSWER, RecordingSpeaker, conversation, drive, forced_head, make_engine, of_type, silence
from freeze_omni.audio.io import read_audio
from freeze_omni.client import DialogueClient, ServerRefused
from freeze_omni.dialogue import AnswerFinished
from freeze_omni.serving.app import create_app
from freeze_omni.serving.local import serving
from freeze_omni.serving.replica import Replica
from freeze_omni.serving.runner import ModelServer, ServerLimits

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ("Paris.", "Madrid.", "Berlin.")


@pytest.fixture(scope="module")
def words(tmp_path_factory) -> dict[str, np.ndarray]:
    """Short words: the forced-answer head answers at the VAD start, and a word ends before the VAD
    could start a second segment, so each answer depends on the word alone (no barge-in)."""
    folder = tmp_path_factory.mktemp("words")
    clips = {}
    for word in WORDS:
        wav = folder / f"{word}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), word], check=True, capture_output=True)
        clips[word] = np.concatenate([silence(0.3), read_audio(wav)])
    return clips


@pytest.fixture(scope="module")
def engine(llm, speech_input, detector):
    return make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True))


def offline_answer(engine, audio: np.ndarray, seed: int) -> str:
    session = engine.new_session("reference", seed=seed)
    events = drive(engine, session, conversation(audio, silence(6.0)))
    return of_type(events, AnswerFinished)[0].text


@pytest.fixture(scope="module")
def references(engine, words) -> dict[str, str]:
    """What the model answers each word alone, offline, with user i's seed i."""
    answers = {word: offline_answer(engine, words[word], seed) for seed, word in enumerate(WORDS)}
    assert len(set(answers.values())) == len(answers), "the references must tell the users apart"
    return answers


def run_server(engine, body, replicas: int = 1, token: str | None = None, **limits):
    """Run `body(ws_url, server)` against a live server on loopback."""
    settings = {"max_pending_chunks": 100, **limits}
    server = ModelServer([Replica(engine, f"r{i}") for i in range(replicas)], ServerLimits(**settings))

    async def main():
        async with serving(create_app(server, token)) as url:
            return await body(url.replace("http", "ws") + "/ws", server)

    return asyncio.run(main())


def test_concurrent_users_each_get_the_answer_to_their_own_words(engine, words, references):
    async def body(url, server):
        clients = [await DialogueClient.connect(url, seed=seed) for seed in range(len(WORDS))]
        records = await asyncio.gather(*(c.converse(words[w], realtime=False, tail_s=6.0)
                                         for c, w in zip(clients, WORDS)))
        for client in clients:
            await client.close()
        return records, server

    records, server = run_server(engine, body, replicas=2)
    for word, record in zip(WORDS, records):
        types = [e["type"] for e in record.events()]
        assert types.index("speech_started") < types.index("answer_started") < types.index("answer_text")
        assert record.events("answer_finished")[0]["text"] == record.answer_text == references[word]
        assert record.audio.size == 1600 * 12  # 100 ms of tone per answer token
    assert server.metrics.answers == 3 and not server.metrics.item_errors


def test_system_prompt_of_the_hello_is_this_users_own(engine):
    async def body(url, server):
        async with await DialogueClient.connect(url, system_prompt="Talk like a pirate.") as pirate:
            async with await DialogueClient.connect(url) as plain:
                return [server.store.get(c.ready["session"]).kv.length for c in (pirate, plain)]

    pirate, plain = run_server(engine, body)
    assert pirate == engine.new_session("p", system_prompt="Talk like a pirate.").kv.length
    assert plain == engine.new_session("d").kv.length != pirate


def test_too_many_users_get_a_clear_refusal_and_the_others_go_on(engine, words, references):
    async def body(url, server):
        first = await DialogueClient.connect(url, seed=2)
        with pytest.raises(ServerRefused) as refused:
            await DialogueClient.connect(url)
        record = await first.converse(words["Berlin."], realtime=False, tail_s=6.0)
        await first.close()
        return refused.value, record, server

    refused, record, server = run_server(engine, body, max_users=1)
    assert refused.code == "server_full"
    assert record.answer_text == references["Berlin."]
    assert server.metrics.refused["server_full"] == 1


def test_access_token_is_required_when_set(engine):
    async def body(url, server):
        with pytest.raises(ServerRefused) as refused:
            await DialogueClient.connect(url, token="wrong")
        async with await DialogueClient.connect(url, token="s3cret") as client:
            return refused.value, client.ready

    refused, ready = run_server(engine, body, token="s3cret")
    assert refused.code == "unauthorised" and ready["type"] == "ready"


async def raw(url: str, hello: dict | str | bytes | None = None):
    socket = await websockets.connect(url, max_size=2 ** 22)
    if hello is not None:
        await socket.send(hello if isinstance(hello, (str, bytes)) else json.dumps(hello))
    return socket


async def next_json(socket) -> dict:
    while isinstance(message := await asyncio.wait_for(socket.recv(), 5.0), bytes):
        pass
    return json.loads(message)


HELLO = {"type": "hello", "sample_rate": 16000, "format": "pcm16", "seed": 1}


@pytest.mark.parametrize("hello, code", [
    ({"type": "hello", "sample_rate": 44100, "format": "pcm16"}, "unsupported_audio"),
    ({"type": "hello", "sample_rate": 16000, "format": "opus"}, "unsupported_audio"),
    ("not json", "bad_hello"),
    (b"\x00\x01", "bad_hello"),
    ({"type": "hello", "sample_rate": 16000, "system_prompt": 5}, "bad_hello"),
    ({"type": "hello", "sample_rate": 16000, "seed": -1}, "bad_hello"),
])
def test_a_bad_hello_is_refused_with_its_reason(engine, hello, code):
    async def body(url, server):
        socket = await raw(url, hello)
        message = await next_json(socket)
        await asyncio.wait_for(socket.wait_closed(), 5.0)
        return message, socket.close_code, len(server.store)

    message, close_code, users = run_server(engine, body)
    assert (message["type"], message["code"], message["fatal"]) == ("error", code, True)
    assert close_code == 1008 and users == 0


def test_a_client_that_never_says_hello_is_told_and_closed(engine, monkeypatch):
    monkeypatch.setattr("freeze_omni.serving.app.HELLO_TIMEOUT_S", 0.2)

    async def body(url, server):
        socket = await raw(url)
        message = await next_json(socket)
        await asyncio.wait_for(socket.wait_closed(), 5.0)
        return message, socket.close_code

    message, code = run_server(engine, body)
    assert (message["code"], message["fatal"], code) == ("bad_hello", True, 1008)


def test_bad_frames_are_reported_and_the_session_goes_on(engine, words, references):
    async def body(url, server):
        socket = await raw(url, HELLO)
        assert (await next_json(socket))["type"] == "ready"
        errors = []
        for frame in (b"\x01\x02\x03", b"\x00" * 40000, "hello?", json.dumps({"type": "nonsense"})):
            await socket.send(frame)
            errors.append(await next_json(socket))
        client = DialogueClient(socket, {})
        record = await client.converse(words["Madrid."], realtime=False, tail_s=6.0)
        await socket.close()
        return errors, record

    errors, record = run_server(engine, body)
    assert [(e["code"], e["fatal"]) for e in errors] == [
        ("bad_frame", False), ("frame_too_large", False), ("unexpected_text", False), ("unexpected_text", False)]
    assert record.answer_text == references["Madrid."]


def test_a_huge_frame_is_refused_before_it_is_buffered_and_the_server_goes_on(engine):
    async def body(url, server):
        socket = await raw(url, HELLO)
        await next_json(socket)
        await socket.send(b"\x00" * (1 << 20))
        await asyncio.wait_for(socket.wait_closed(), 5.0)
        await asyncio.sleep(0.1)
        async with await DialogueClient.connect(url) as client:
            ready = client.ready["type"]
        return socket.close_code, ready, len(server.store)

    code, ready, users = run_server(engine, body)
    assert (code, ready, users) == (1009, "ready", 0)


def test_input_far_ahead_of_the_server_ends_that_session_only(engine):
    async def body(url, server):
        socket = await raw(url, HELLO)
        await next_json(socket)
        for _ in range(10):  # 10 s at once, the limit is 2 s of backlog
            await socket.send(np.zeros(16000, "<i2").tobytes())
        message = await next_json(socket)
        await asyncio.wait_for(socket.wait_closed(), 5.0)
        await asyncio.sleep(0.1)
        return message, len(server.store)

    message, users = run_server(engine, body, max_pending_chunks=12)
    assert message["code"] == "too_far_behind" and users == 0


def test_a_client_that_never_reads_is_disconnected_with_bounded_buffers(engine, words, monkeypatch):
    """The network never drains (every send blocks): the outbox fills to its bound and the user is
    dropped instead of the server buffering the answer without limit."""
    monkeypatch.setattr("freeze_omni.serving.runner.OUTBOX_MESSAGES", 4)

    async def stuck(ws, message):
        await asyncio.Event().wait()

    monkeypatch.setattr("freeze_omni.serving.app._send", stuck)

    async def body(url, server):
        client = await DialogueClient.connect(url, seed=0)
        record = await client.converse(words["Paris."], realtime=False, tail_s=6.0, timeout_s=10.0)
        return record, server.metrics.closed["slow_reader"], len(server.store), len(server.connections)

    record, slow, users, connections = run_server(engine, body)
    assert (slow, users, connections) == (1, 0, 0)
    assert record.closed_code == 1008 and not record.received


def test_disconnect_mid_answer_frees_the_session(engine, words):
    async def body(url, server):
        client = await DialogueClient.connect(url)
        audio = np.concatenate([words["Paris."], silence(0.5)])
        for start in range(0, audio.size, 2560):
            await client.send_audio(audio[start:start + 2560])
        for _ in range(200):
            if server.metrics.answers:
                break
            await asyncio.sleep(0.01)
        live = server.store.get(client.ready["session"])
        answering = live.answer is not None
        session = weakref.ref(live)
        del live
        client.socket.transport.abort()
        for _ in range(200):
            if not server.connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # an item in flight finishes
        gc.collect()
        return answering, len(server.store), server.scheduler.has_ready, session()

    answering, users, ready, session = run_server(engine, body)
    assert answering and users == 0 and not ready and session is None


def test_an_idle_session_is_ended_with_a_reason(engine):
    async def body(url, server):
        client = await DialogueClient.connect(url)
        message = await next_json(client.socket)
        await asyncio.wait_for(client.socket.wait_closed(), 5.0)
        return message, client.socket.close_code, len(server.store)

    message, code, users = run_server(engine, body, idle_timeout_s=0.3, housekeeping_s=0.1)
    assert (message["code"], message["fatal"], code, users) == ("idle_timeout", True, 1008, 0)


def test_over_the_memory_cap_the_least_recently_active_user_is_ended(engine):
    async def body(url, server):
        quiet = await DialogueClient.connect(url)
        active = await DialogueClient.connect(url)
        cap = server.store.memory_bytes() - 1  # one session must go
        server.store.memory_cap_bytes = cap
        await active.send_audio(silence(0.16))
        message = await next_json(quiet.socket)
        await asyncio.wait_for(quiet.socket.wait_closed(), 5.0)
        alive = [c.ready["session"] for c in (quiet, active) if c.ready["session"] in server.store]
        await active.close()
        return message, alive, active.ready["session"]

    message, alive, active = run_server(engine, body, housekeeping_s=0.1)
    assert (message["code"], message["fatal"]) == ("memory", True) and alive == [active]


def test_health_and_metrics_endpoints(engine, words):
    import urllib.request

    async def body(url, server):
        async with await DialogueClient.connect(url, seed=0) as client:
            await client.converse(words["Paris."], realtime=False, tail_s=6.0)
        base = url.removesuffix("/ws").replace("ws", "http", 1)
        loop = asyncio.get_running_loop()
        fetch = lambda path: urllib.request.urlopen(base + path, timeout=5).read().decode()  # noqa: E731
        return [await loop.run_in_executor(None, fetch, p) for p in ("/health", "/metrics", "/")]

    health, metrics, page = run_server(engine, body)
    assert json.loads(health) == {"status": "ok", "users": 0, "max_users": 8, "replicas": 1}
    assert "freeze_omni_answers_total 1" in metrics
    count = next(line for line in metrics.splitlines() if line.startswith("freeze_omni_chunk_latency_ms_count"))
    assert int(count.split()[1]) > 10
    assert "<html" in page.lower() or "<!doctype" in page.lower()
