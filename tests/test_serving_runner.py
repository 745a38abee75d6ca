"""The asyncio server core with fake replicas (failures, ordering, other users unaffected), and the
real replica's rewind after an item that raised, on the tiny dialogue models."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from dialogue_support import (ANSWER, AnswerAfterSpeech, RecordingSpeaker, assert_same_kv, conversation, drive,
                              forced_head, make_engine, of_type, silence)
from freeze_omni.dialogue import AnswerFinished, AnswerStarted, SpeechStarted
from freeze_omni.dialogue.turn import CHUNK_SAMPLES
from freeze_omni.llm.state_head import StateHead
from freeze_omni.serving.replica import Replica, Result, answer_work
from freeze_omni.serving.runner import ModelServer, ServerLimits
from freeze_omni.serving.scheduler import Kind, QueueFull, WorkItem

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeKV:
    keys = values = np.zeros(8, np.float32)


class FakeSession:
    def __init__(self, session_id: str) -> None:
        self.session_id, self.kv, self.listening, self.chunks = session_id, FakeKV(), None, 0


class FakeEngine:
    class speaker:
        sample_rate = 16000


class FakeReplica:
    """Each chunk becomes a SpeechStarted event whose t_ms is the session's chunk count (so order is
    visible). `fail(item, session)` decides whether an item raises: per item, or the whole batch."""

    engine = FakeEngine()

    def __init__(self, fail=lambda item, session: False, whole_batch: bool = False, delay: float = 0.0) -> None:
        self.fail, self.whole_batch, self.delay = fail, whole_batch, delay
        self.batch_sizes: list[int] = []
        self.created: list[str] = []  # session ids in the order users connected

    def new_session(self, session_id, system_prompt=None, seed=0):
        self.created.append(session_id)
        return FakeSession(session_id)

    def run(self, batch):
        self.batch_sizes.append(len(batch))
        if self.delay:
            threading.Event().wait(self.delay)
        results = []
        for item, session in batch:
            if self.fail(item, session):
                if self.whole_batch:
                    raise RuntimeError("replica broke")
                results.append(Result(item, error=RuntimeError("item broke")))
                continue
            session.chunks += 1
            results.append(Result(item, [SpeechStarted(float(session.chunks), float(item.seq))]))
        return results


def drain(connection) -> list[dict]:
    out = []
    while not connection.outbox.empty():
        out.append(connection.outbox.get_nowait())
    return out


def serve(replicas, feed_chunks: dict[str, int], **limits) -> tuple[ModelServer, dict[str, list[dict]]]:
    """Connect one user per key, feed that many chunks each, run until all work is done."""
    async def main():
        server = ModelServer(replicas, ServerLimits(**limits))
        await server.start()
        connections = {name: await server.connect() for name in feed_chunks}
        for name, n in feed_chunks.items():
            server.feed(connections[name], np.zeros(n * CHUNK_SAMPLES, np.float32))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if not server.scheduler.has_ready and len(server._idle) == len(replicas):
                break
        messages = {name: drain(c) for name, c in connections.items()}
        await server.stop()
        return server, messages

    return asyncio.run(main())


def test_each_user_gets_its_chunks_handled_in_order_across_replicas():
    replicas = [FakeReplica(delay=0.002), FakeReplica(delay=0.002)]
    server, messages = serve(replicas, {"a": 6, "b": 6, "c": 6}, max_batch=2)
    for name, out in messages.items():
        assert [m["speech_ms"] for m in out] == [0, 1, 2, 3, 4, 5]  # chunk numbers, in order
        assert [m["t_ms"] for m in out] == [1, 2, 3, 4, 5, 6]
    assert server.metrics.items["encode"] == 18
    assert max(r for replica in replicas for r in replica.batch_sizes) == 2  # batches across users happened
    assert all(replica.batch_sizes for replica in replicas)  # both replicas worked


def test_an_item_that_raises_is_retried_once_then_reported_and_others_go_on():
    fails = {"n": 0}

    def fail(item, session):  # the first user ("bad"): chunk 1 fails on the first try and the retry
        if session.session_id == replica.created[0] and item.seq == 1:
            fails["n"] += 1
            return True
        return False

    replica = FakeReplica(fail)
    server, messages = serve([replica], {"bad": 3, "good": 3})
    assert fails["n"] == 2
    bad = messages["bad"]
    assert [m["type"] for m in bad] == ["speech_started", "error", "speech_started"]
    assert bad[1]["code"] == "internal" and not bad[1]["fatal"]
    assert [m["speech_ms"] for m in bad if m["type"] == "speech_started"] == [0, 2]
    assert [m["speech_ms"] for m in messages["good"]] == [0, 1, 2]
    assert server.metrics.item_errors["encode"] == 2


def test_a_replica_that_breaks_once_costs_a_retry_not_the_chunk():
    broke = {"done": False}

    def fail_once(item, session):
        if not broke["done"]:
            broke["done"] = True
            return True
        return False

    server, messages = serve([FakeReplica(fail_once, whole_batch=True)], {"a": 3})
    assert [m["speech_ms"] for m in messages["a"]] == [0, 1, 2]
    assert server.metrics.item_errors["encode"] == 1


def test_a_user_leaving_between_batch_and_run_costs_nothing():
    async def main():
        replica = FakeReplica()
        server = ModelServer([replica])
        connection = await server.connect()
        server.feed(connection, np.zeros(CHUNK_SAMPLES, np.float32))
        batch = server.scheduler.next_batch()
        server._idle.remove(replica)  # as the dispatcher does when it hands the batch out
        server.disconnect(connection)
        await server._run(replica, batch)
        await server.stop()
        return server.busy_replicas, replica.batch_sizes

    assert asyncio.run(main()) == (0, [])


def queued_sizes(frames: list[int], **limits) -> list[int]:
    """Feed frames of these lengths without running anything; the sizes of the queued items."""
    async def main():
        server = ModelServer([FakeReplica()], ServerLimits(**limits))
        connection = await server.connect()
        try:
            for n in frames:
                server.feed(connection, np.zeros(n, np.float32))
            sizes = []
            while batch := server.scheduler.next_batch():
                sizes += [item.pcm.size for item in batch]
                for item in batch:
                    server.scheduler.done(item, None)
            return sizes
        finally:
            await server.stop()

    return asyncio.run(main())


def test_frames_are_queued_at_once_and_cut_at_chunk_boundaries():
    """A frame shorter than a chunk reaches the engine at once (it checks it for talk-over), and no
    item holds more than one chunk of model work."""
    assert queued_sizes([1000] * 6) == [1000, 1000, 560, 440, 1000, 1000, 120, 880]
    assert queued_sizes([2 * CHUNK_SAMPLES + 10]) == [CHUNK_SAMPLES, CHUNK_SAMPLES, 10]


def test_the_queue_limit_counts_audio_not_frames():
    assert len(queued_sizes([512] * 15, max_pending_chunks=3)) == 15  # 7680 samples: exactly 3 chunks
    with pytest.raises(QueueFull):
        queued_sizes([512] * 16, max_pending_chunks=3)


class Exploding:
    """Wraps an LLM; the forward pass numbered `at` raises (then it behaves again)."""

    def __init__(self, llm, at: int) -> None:
        self.llm, self.at, self.calls = llm, at, 0

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def prefill_sessions(self, embeds, caches):
        self.calls += 1
        if self.calls == self.at:
            for x, kv in zip(embeds, caches):
                kv.reserve(x.shape[1])
                kv.advance(x.shape[1])  # half-done work, as a crash mid-forward would leave
            raise RuntimeError("boom")
        return self.llm.prefill_sessions(embeds, caches)


def test_a_real_replica_rewinds_a_failed_turn_and_the_conversation_goes_on(llm, speech_input, detector, speech):
    """A prefill fails (half-written) in the middle of the second question: the session is back at
    its last finished exchange, and the next question is answered exactly as in a run in which
    the failed question was never asked."""
    head = StateHead(llm.hidden_size)
    engine = make_engine(llm, speech_input, detector, head, RecordingSpeaker())
    policy = AnswerAfterSpeech(head)
    question, pause = conversation(silence(0.5), speech["q1"], silence(1.0)), silence(2.0)

    reference = engine.new_session("ref", seed=3)
    drive(engine, reference, question, policy)
    expected = drive(engine, reference, np.concatenate([pause, question]), policy)

    session = engine.new_session("user", seed=3)
    drive(engine, session, question, policy)
    after_first = (session.kv.length, list(session.history), session.generator.get_state())
    replica = Replica(make_engine(Exploding(llm, at=2), speech_input, detector, head, RecordingSpeaker()))
    results = []
    for start in range(0, question.size, CHUNK_SAMPLES):
        clock = session.samples_in
        (result,) = replica.run([(WorkItem("user", Kind.ENCODE, question[start:start + CHUNK_SAMPLES]), session)])
        results.append(result)
        if result.error is not None:
            break
    assert str(results[-1].error) == "boom" and of_type(results[-2].events, SpeechStarted)
    assert session.listening is None and session.answer is None and session.samples_in == clock
    assert (session.kv.length, session.history) == after_first[:2]
    assert torch.equal(session.generator.get_state(), after_first[2])

    got = drive(engine, session, np.concatenate([pause, question]), policy)
    assert of_type(got, AnswerFinished)[0].text == of_type(expected, AnswerFinished)[0].text
    assert_same_kv(session.kv, reference.kv)


def test_answer_work_names_the_next_unit(llm, speech_input, detector, speech):
    engine = make_engine(llm, speech_input, detector, forced_head(llm, ANSWER), RecordingSpeaker(audio=True))
    session = engine.new_session("user")
    assert answer_work(engine, session) is None
    events = engine.accept_audio(session, conversation(silence(0.3), speech["q1"])[:CHUNK_SAMPLES * 12])
    assert of_type(events, AnswerStarted)
    assert answer_work(engine, session) is Kind.TOKEN
    while answer_work(engine, session) is Kind.TOKEN:
        engine.step_answer(session, 1)
    assert answer_work(engine, session) is Kind.PACKET


class Counting:
    """Wraps an LLM and records how many sessions each forward pass carried."""

    def __init__(self, llm) -> None:
        self.llm, self.passes = llm, []

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def prefill_sessions(self, embeds, caches):
        self.passes.append(len(caches))
        return self.llm.prefill_sessions(embeds, caches)


def test_a_replica_runs_the_items_of_a_batch_in_shared_forward_passes(llm, speech_input, detector, speech):
    counting = Counting(llm)
    engine = make_engine(counting, speech_input, detector, forced_head(llm, ANSWER))
    replica = Replica(engine)
    sessions = [engine.new_session(name) for name in ("a", "b", "c")]
    audio = conversation(silence(0.3), speech["q1"])[:CHUNK_SAMPLES * 12]
    for start in range(0, audio.size, CHUNK_SAMPLES):
        replica.run([(WorkItem(s.session_id, Kind.ENCODE, audio[start:start + CHUNK_SAMPLES]), s) for s in sessions])
    assert all(answer_work(engine, s) is Kind.TOKEN for s in sessions)
    counting.passes.clear()
    results = replica.run([(WorkItem(s.session_id, Kind.TOKEN), s) for s in sessions])
    assert counting.passes == [3] and all(r.error is None for r in results)
    assert all(len(s.answer.tokens) == 1 for s in sessions)
