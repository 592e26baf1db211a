"""The control side: the agent through Faust's harness (a real ``history`` table whose changelog
writes are recorded), and its steps on their own (the wait for the group's commits, deferral,
replays) with fake offsets, so no broker is needed."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import faust
import pytest

from stream_app.cache import CacheKeys, MemoryCache, UserRecs
from stream_app.cache.journals import decode_entries, encode_entry
from stream_app.kafka.control import ForgetUser, encode_forget, parse_control
from stream_app.settings import Settings
from stream_app.worker.agents import register_live_path
from stream_app.worker.control_side import ControlSide

T0 = 1_700_000_000_000


class FakeOffsets:
    """The events topic's end and committed offsets, as the test sets them."""

    def __init__(self, end: int, committed: int | None) -> None:
        self.end, self.committed_at = end, committed

    def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return dict.fromkeys(partitions, self.end)

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        return dict.fromkeys(partitions, self.committed_at)


def _forget(user: str, fence: int | None = None) -> bytes:
    return encode_forget(ForgetUser(user, fence))


def _event(user: str, item: str) -> bytes:
    payload = {"user_id": user, "item_id": item, "event_type": "view", "timestamp": T0}
    return json.dumps(payload).encode()


@pytest.fixture
def harness(monkeypatch, tmp_path):
    # one partition: the harness delivers everything on partition 0, each user's home
    settings = Settings(
        app_id="unit-control",
        event_partitions=1,
        batch_max_events=10,
        batch_max_delay_s=0.01,
        state_dir=tmp_path,
    )
    app = faust.App(
        settings.app_id,
        broker="kafka://127.0.0.1:1",
        store="memory://",
        autodiscover=False,
        datadir=str(tmp_path / "faust"),
    )
    cache = MemoryCache()
    offsets = FakeOffsets(end=0, committed=None)
    parts = register_live_path(app, settings, cache=cache, offsets=offsets)
    dead, changelog = [], []

    async def record_dead(key=None, value=None, **_):
        dead.append(value)

    def record_changelog(partition, key, value, *args, **kwargs):
        changelog.append((key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=0))

    async def no_send(*args, **kwargs):
        return None

    monkeypatch.setattr(parts.dlq_topic, "send", record_dead)
    monkeypatch.setattr(parts.history, "send_changelog", record_changelog)
    monkeypatch.setattr(parts.deltas_topic, "send", no_send)
    raw = app.channel(
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
    )
    return SimpleNamespace(
        parts=parts, cache=cache, dead=dead, changelog=changelog, raw=raw, offsets=offsets
    )


async def _until(condition, what: str) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_agent_forgets_a_user_with_a_tombstone_and_dead_letters_bad_commands(harness):
    cache, history = harness.cache, harness.parts.history
    # a dead letter of hers on the dashboard's journal: it names her, so it goes too
    preview = {"preview": '{"user_id": "u1", "item_id": 7, "event_type": "oops"}'}
    cache.append_journal(CacheKeys().dead_letters, [encode_entry(preview)], 20)
    bad = [
        (b"u1", b"{oops", "control: not valid UTF-8 JSON"),
        (b"u1", b'{"v": 9, "op": "forget_user", "user_id": "u1"}', "control: unsupported version"),
        (b"u2", _forget("u1"), "control: the message key must be the user_id's UTF-8 bytes"),
        (b"u1", _forget("u1", 99), "control: events_offset 99 is past the end (5)"),
    ]

    async def scenario():
        async with harness.parts.agent.test_context(channel=harness.raw) as agent:
            for user, item in [("u1", "a"), ("u1", "b"), ("u2", "a")]:
                await agent.put(_event(user, item), key=user.encode(), wait=False)
            await _until(lambda: cache.get_stats()["events"] >= 3, "the events")
        assert set(history) == {b"u1", b"u2"} and cache.get_recs("u1") is not None
        harness.offsets.end = harness.offsets.committed_at = 5
        async with harness.parts.control_agent.test_context(channel=harness.raw) as agent:
            for key, value, _ in bad:
                await agent.put(value, key=key, wait=False)
            # her, someone never seen, and her again (a replayed or repeated command)
            for user in ("u1", "ghost", "u1"):
                await agent.put(_forget(user, 5), key=user.encode(), wait=False)
            await _until(lambda: cache.get_stats()["forgotten"] >= 3, "the forgets")

    asyncio.run(scenario())
    # the tombstones, unknown user included (Faust sends it before touching the store)
    tombstones = [key for key, value in harness.changelog if value is None]
    assert tombstones == [b"u1", b"ghost", b"u1"]
    assert set(history) == {b"u2"} and history[b"u2"] == ["a"]
    assert cache.get_recs("u1") is None and cache.get_recs("u2") is not None
    # the journal keeps only the dead letter that does not name her
    journal = decode_entries(cache.read_journal(CacheKeys().dead_letters, 20))
    assert [e["preview"] for e in journal] == ["{oops"]
    reasons = [letter.reason for letter in harness.dead]
    assert [r[: len(want)] for r, (_, _, want) in zip(reasons, bad, strict=True)] == [
        want for _, _, want in bad
    ]
    assert cache.get_stats()["control_dlq"] == 4


def _side(history: dict, cache: MemoryCache, offsets: FakeOffsets, sent: list) -> ControlSide:
    class History(dict):
        def __init__(self, rows: dict) -> None:
            super().__init__(rows)
            self.tombstones: list[bytes] = []

        def __delitem__(self, key):
            self.tombstones.append(key)
            super().__delitem__(key)

    async def send(key=None, value=None, partition=None):
        sent.append((key, value, partition))

    async def flushed() -> None:
        return None

    table = History(history)
    topology = SimpleNamespace(history=table, dlq=None, control=SimpleNamespace(send=send))
    settings = Settings(event_partitions=1)
    return ControlSide(topology, settings, cache, CacheKeys(), offsets, flushed, wait_s=0.05)


def _command(user: str, offset: int, fence: int | None) -> SimpleNamespace:
    message = SimpleNamespace(key=user.encode(), partition=0, offset=offset, topic="control")
    return SimpleNamespace(message=message, value=_forget(user, fence))


def test_a_forget_waits_for_her_earlier_events_and_is_requeued_until_they_are_committed():
    cache = MemoryCache()
    cache.write_batch([UserRecs("u1", ())], ttl_s=60, stats={})
    offsets, sent = FakeOffsets(end=10, committed=7), []
    side = _side({b"u1": ["a"]}, cache, offsets, sent)

    # events 7..9 of partition 0 are not processed yet: one of them may be hers
    assert asyncio.run(side.process([_command("u1", 3, None)])) == []
    assert side.topology.history == {b"u1": ["a"]} and cache.get_recs("u1") is not None
    # requeued with the fence made explicit: the end of her partition when it was read
    assert sent == [(b"u1", _forget("u1", 10), 0)]
    assert parse_control(b"u1", sent[0][1]) == ForgetUser("u1", 10)

    offsets.committed_at = 10  # the group is past her earlier events
    assert asyncio.run(side.process([_command("u1", 4, 10)])) == ["u1"]
    assert side.topology.history == {} and cache.get_recs("u1") is None
    assert cache.get_stats()["forgotten"] == 1


def test_a_replayed_command_is_skipped_and_a_fence_at_zero_never_waits():
    cache, sent = MemoryCache(), []
    side = _side({b"u1": ["a"]}, cache, FakeOffsets(end=0, committed=None), sent)
    batch = [_command("u1", 0, 0)]
    assert asyncio.run(side.process(batch)) == ["u1"]
    # a restart hands the same command over again: at or below the marks, not applied again
    assert asyncio.run(side.process(batch)) == []
    assert side.topology.history.tombstones == [b"u1"]
    assert cache.get_stats()["forgotten"] == 1 and sent == []
