"""Scheduler and session store: pure bookkeeping, no models, no threads."""

from __future__ import annotations

import numpy as np
import pytest

from freeze_omni.serving.scheduler import Kind, QueueFull, Scheduler
from freeze_omni.serving.store import ServerFull, SessionStore

CHUNK = np.zeros(2560, np.float32)


def run_all(scheduler: Scheduler, answers: dict[str, list[Kind | None]] | None = None) -> list[list[tuple[str, Kind, int]]]:
    """Drain the scheduler as one replica would; `answers[sid]` is the answer work each finished
    item leaves behind (popped in order, default none)."""
    answers = answers or {}
    batches = []
    while batch := scheduler.next_batch():
        batches.append([(item.session_id, item.kind, item.seq) for item in batch])
        for item in batch:
            left = answers.get(item.session_id)
            scheduler.done(item, left.pop(0) if left else None)
    return batches


def test_a_sessions_chunks_run_in_order_and_never_two_at_once():
    scheduler = Scheduler(max_batch=4)
    scheduler.open("a")
    for _ in range(3):
        scheduler.add_chunk("a", CHUNK)
    first = scheduler.next_batch()
    assert [(i.session_id, i.seq) for i in first] == [("a", 0)]
    assert scheduler.next_batch() == []  # "a" is busy: its next chunk waits for the first
    scheduler.done(first[0], None)
    assert [i.seq for i in scheduler.next_batch()] == [1]


def test_round_robin_serves_every_user_before_anyone_twice():
    scheduler = Scheduler(max_batch=1)
    for sid in "abc":
        scheduler.open(sid)
    for _ in range(3):
        scheduler.add_chunk("a", CHUNK)
    scheduler.add_chunk("b", CHUNK)
    scheduler.add_chunk("c", CHUNK)
    order = [batch[0][0] for batch in run_all(scheduler)]
    assert order == ["a", "b", "c", "a", "a"]


def test_batches_take_the_next_sessions_in_line():
    scheduler = Scheduler(max_batch=2)
    for sid in "abc":
        scheduler.open(sid)
        scheduler.add_chunk(sid, CHUNK)
    scheduler.add_chunk("a", CHUNK)
    batches = run_all(scheduler)
    assert batches == [[("a", Kind.ENCODE, 0), ("b", Kind.ENCODE, 0)], [("c", Kind.ENCODE, 0), ("a", Kind.ENCODE, 1)]]


def test_a_batch_can_be_limited_below_max_batch():
    scheduler = Scheduler(max_batch=4)
    for sid in "abc":
        scheduler.open(sid)
        scheduler.add_chunk(sid, CHUNK)
    assert scheduler.ready_sessions == 3
    assert [i.session_id for i in scheduler.next_batch(limit=2)] == ["a", "b"]
    assert [i.session_id for i in scheduler.next_batch(limit=2)] == ["c"]


def test_chunks_and_tokens_share_a_batch_but_speech_packets_go_alone():
    scheduler = Scheduler(max_batch=4)
    for sid in "abcd":
        scheduler.open(sid)
        scheduler.add_chunk(sid, CHUNK)
    a, b, c, d = scheduler.next_batch()
    scheduler.done(a, Kind.TOKEN)  # "a" now has answer work, "b" and "d" speech to make, "c" another chunk
    scheduler.done(b, Kind.PACKET)
    scheduler.done(c, None)
    scheduler.done(d, Kind.PACKET)
    scheduler.add_chunk("c", CHUNK)
    assert [(i.session_id, i.kind) for i in scheduler.next_batch()] == [("c", Kind.ENCODE), ("a", Kind.TOKEN)]
    assert [(i.session_id, i.kind) for i in scheduler.next_batch()] == [("b", Kind.PACKET)]
    assert [(i.session_id, i.kind) for i in scheduler.next_batch()] == [("d", Kind.PACKET)]


def test_input_chunks_go_before_other_users_answer_work():
    scheduler = Scheduler(max_batch=1)
    for sid in "abc":
        scheduler.open(sid)
        scheduler.add_chunk(sid, CHUNK)
    a, b, c = (scheduler.next_batch()[0] for _ in range(3))
    scheduler.done(a, Kind.PACKET)  # "a" and "b" have waited longer, but with answer work only
    scheduler.done(b, Kind.TOKEN)
    scheduler.done(c, None)
    scheduler.add_chunk("c", CHUNK)
    order = [batch[0][:2] for batch in run_all(scheduler)]
    assert order == [("c", Kind.ENCODE), ("a", Kind.PACKET), ("b", Kind.TOKEN)]


def test_answer_work_goes_earliest_due_first_and_equal_dues_keep_line_order():
    scheduler = Scheduler(max_batch=2)
    for sid in "abcde":
        scheduler.open(sid)
        scheduler.add_chunk(sid, CHUNK)
    items = {item.session_id: item for _ in range(3) for item in scheduler.next_batch()}
    scheduler.done(items["a"], Kind.PACKET, due=12.0)  # speaking, its audio lasts until t = 12 s
    scheduler.done(items["b"], Kind.TOKEN, due=11.0)
    scheduler.done(items["c"], Kind.TOKEN, due=10.0)  # waiting longest for audio
    scheduler.done(items["d"], Kind.TOKEN, due=11.0)
    scheduler.done(items["e"], None)
    scheduler.add_chunk("e", CHUNK)
    order = [[(sid, kind) for sid, kind, _ in batch] for batch in run_all(scheduler)]
    assert order == [[("e", Kind.ENCODE), ("c", Kind.TOKEN)], [("b", Kind.TOKEN), ("d", Kind.TOKEN)],
                     [("a", Kind.PACKET)]]


def test_answer_work_and_input_alternate_so_neither_starves():
    scheduler = Scheduler(max_batch=1)
    scheduler.open("a")
    for _ in range(3):
        scheduler.add_chunk("a", CHUNK)
    answers = {"a": [Kind.TOKEN, Kind.PACKET, Kind.PACKET, Kind.TOKEN, Kind.TOKEN, Kind.TOKEN, None]}
    kinds = [batch[0][1] for batch in run_all(scheduler, answers)]
    assert kinds == [Kind.ENCODE, Kind.TOKEN, Kind.ENCODE, Kind.PACKET, Kind.ENCODE, Kind.TOKEN, Kind.TOKEN]


def test_a_failed_chunk_is_retried_once_first_then_dropped():
    scheduler = Scheduler()
    scheduler.open("a")
    scheduler.add_chunk("a", CHUNK)
    scheduler.add_chunk("a", CHUNK)
    (item,) = scheduler.next_batch()
    assert scheduler.failed(item, None) is True
    (retry,) = scheduler.next_batch()
    assert (retry.seq, retry.attempt) == (0, 1)  # ahead of chunk 1: order holds
    assert scheduler.failed(retry, None) is False
    (following,) = scheduler.next_batch()
    assert (following.seq, following.attempt) == (1, 0)


def test_failed_answer_work_is_not_retried():
    scheduler = Scheduler()
    scheduler.open("a")
    scheduler.add_chunk("a", CHUNK)
    (item,) = scheduler.next_batch()
    scheduler.done(item, Kind.TOKEN)
    (token,) = scheduler.next_batch()
    assert scheduler.failed(token, None) is False
    assert scheduler.next_batch() == []


def test_input_queue_is_bounded_and_closing_forgets_everything():
    scheduler = Scheduler(max_pending_chunks=2)
    scheduler.open("a")
    scheduler.add_chunk("a", CHUNK)
    scheduler.add_chunk("a", CHUNK)
    with pytest.raises(QueueFull):
        scheduler.add_chunk("a", CHUNK)
    (item,) = scheduler.next_batch()
    scheduler.close("a")
    scheduler.done(item, Kind.TOKEN)  # the item in flight finishes after its user left
    assert scheduler.next_batch() == [] and not scheduler.has_ready


class FakeKV:
    def __init__(self, nbytes: int) -> None:
        self.keys = self.values = np.zeros(nbytes // 2, np.uint8)


class FakeSession:
    def __init__(self, sid: str, nbytes: int = 100) -> None:
        self.session_id, self.kv, self.listening = sid, FakeKV(nbytes), None


def test_store_refuses_past_max_users_and_reports_idle_sessions():
    store = SessionStore(max_users=2, idle_timeout_s=10.0)
    store.add(FakeSession("a"), now=0.0)
    store.add(FakeSession("b"), now=0.0)
    with pytest.raises(ServerFull):
        store.reserve()
    store.touch("a", now=8.0)
    assert store.idle(now=12.0) == ["b"]
    store.remove("b")
    store.reserve()  # room again


def test_store_over_memory_ends_least_recently_active_first():
    store = SessionStore(max_users=3, memory_cap_bytes=250)
    for sid, t in (("a", 2.0), ("b", 1.0), ("c", 3.0)):
        store.add(FakeSession(sid), now=t)
    assert store.memory_bytes() == 300
    assert store.over_memory() == ["b"]
