"""The live-path agent itself, through Faust's agent test harness (``agent.test_context()``).

No broker: the harness feeds the agent from a local channel, the cache is the in-memory backend,
and the two places that would reach Kafka -- the DLQ topic's ``send`` and the history table's
changelog ``send_changelog`` -- are replaced by recorders (the table's ``use_partitioner``
asks the real producer for cluster metadata, which a test harness does not have).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import faust
import pytest

from models.events import Interaction
from models.online.stream.partitions import key_partition
from stream_app.cache import CacheKeys, MemoryCache
from stream_app.cache.journals import decode_entries
from stream_app.kafka.item_deltas import unpack_deltas
from stream_app.settings import Settings
from stream_app.worker.agents import register_live_path
from stream_app.worker.records import DeadLetter

T0 = 1_700_000_000_000


def _event(user: str, item: str, ts: int = T0) -> bytes:
    return json.dumps(
        {"user_id": user, "item_id": item, "event_type": "view", "timestamp": ts}
    ).encode()


def _unit_app(settings: Settings, tmp_path) -> faust.App:
    """A Faust app for the agent test harness: no broker is reached."""
    return faust.App(
        settings.app_id,
        broker="kafka://127.0.0.1:1",
        store="memory://",
        autodiscover=False,
        datadir=str(tmp_path / "faust"),
    )


@pytest.fixture(params=[False, True], ids=["batch-on-loop", "batch-in-thread"])
def harness(request, monkeypatch, tmp_path):
    """Both places a batch can run (``Settings.batch_in_thread``; the thread is also where it
    runs while a session model serves)."""
    settings = Settings(
        app_id="unit-agent",
        top_n=2,
        batch_max_events=10,
        batch_max_delay_s=0.01,
        state_dir=tmp_path,
        batch_in_thread=request.param,
    )
    app = _unit_app(settings, tmp_path)
    cache = MemoryCache()
    parts = register_live_path(app, settings, cache=cache)
    dead: list[tuple[bytes | None, DeadLetter]] = []
    changelog: list[tuple[bytes, list[str]]] = []

    async def record_dead(key=None, value=None, **_):
        dead.append((key, value))

    def record_changelog(partition, key, value, *args, **kwargs):
        changelog.append((key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=0))

    monkeypatch.setattr(parts.dlq_topic, "send", record_dead)
    monkeypatch.setattr(parts.history, "send_changelog", record_changelog)
    deltas: list[tuple[bytes, bytes]] = []
    delta_partitions: list[int] = []
    item_changelog: list[tuple[bytes, dict]] = []

    async def record_delta(key=None, value=None, partition=None, **_):
        deltas.append((key, value))
        delta_partitions.append(partition)

    def record_item_changelog(partition, key, value, *args, **kwargs):
        item_changelog.append((key, value))
        return SimpleNamespace(message=SimpleNamespace(partition=0))

    monkeypatch.setattr(parts.deltas_topic, "send", record_delta)
    monkeypatch.setattr(parts.item_stats, "send_changelog", record_item_changelog)
    raw = app.channel(
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
    )
    return SimpleNamespace(
        parts=parts,
        cache=cache,
        dead=dead,
        changelog=changelog,
        raw=raw,
        deltas=deltas,
        delta_partitions=delta_partitions,
        partitions=settings.event_partitions,
        item_changelog=item_changelog,
    )


def test_agent_routes_bad_bytes_to_the_dlq_and_good_ones_to_history_and_recs(harness):
    async def scenario():
        async with harness.parts.agent.test_context(channel=harness.raw) as agent:
            for value, key in [
                (_event("u1", "a"), b"u1"),
                (_event("u2", "b"), b"u2"),
                (b"\xffnot json", b"x"),
                (_event("u1", "c", T0 + 1), b"u1"),
                (b"", b"y"),
                (_event("u3", "a"), b"u3"),
            ]:
                await agent.put(value, key=key, wait=False)
            for _ in range(200):  # batches close after batch_max_delay_s
                if harness.cache.get_stats()["events"] >= 4:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(scenario())
    # Dead letters: the two bad messages, with reasons and original bytes.
    # keyed by where they were (topic/partition/offset): a reader deduplicates by the key
    assert [(key, letter.payload()) for key, letter in harness.dead] == [
        (b"events/0/2", b"\xffnot json"),
        (b"events/0/4", b""),
    ]
    assert harness.cache.get_stats()["dlq"] == 2
    assert all(letter.reason for _, letter in harness.dead)
    # History: one table write per user per batch, keyed by the user id bytes.
    history = dict(harness.changelog)
    assert history[b"u1"] == ["a", "c"] and history[b"u2"] == ["b"]
    # Recommendations: trending items the user has not seen.
    u1 = harness.cache.get_recs("u1")
    assert [r.item_id for r in u1.items] == ["b"]
    assert {r.item_id for r in harness.cache.get_recs("u3").items} == {"b", "c"}
    assert harness.cache.get_stats()["dlq"] == 2
    # Each list carries the history it follows from; the dashboard's journal the dead letters.
    assert u1.recent == ("a", "c")
    journal = decode_entries(harness.cache.read_journal(CacheKeys().dead_letters, 10))
    assert [(e["preview"], e["offset"]) for e in journal] == [("", 4), ("\ufffdnot json", 2)]
    assert all(e["reason"] for e in journal)


def test_user_side_sends_one_delta_per_touched_item_and_item_side_publishes_neighbors(harness):
    async def user_side():
        async with harness.parts.agent.test_context(channel=harness.raw) as agent:
            for item, ts in [("a", T0), ("b", T0 + 1), ("c", T0 + 2)]:
                await agent.put(_event("u1", item, ts), key=b"u1", wait=False)
            for _ in range(200):
                if harness.cache.get_stats()["events"] >= 3:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(user_side())
    sent = {
        item.encode(): delta for _, value in harness.deltas for item, delta in unpack_deltas(value)
    }
    # u1 viewed a, b, c (weight 1 each): every pair co-occurs once, both directions.
    assert sorted(sent) == [b"a", b"b", b"c"]
    # one message per target partition, each holding exactly its partition's items (the
    # partition the producer's partitioner gives the item key)
    by_partition = {
        part: sorted(item for item, _ in unpack_deltas(value))
        for part, (_, value) in zip(harness.delta_partitions, harness.deltas, strict=True)
    }
    expected: dict[int, list[str]] = {}
    for item in "abc":
        expected.setdefault(key_partition(item, harness.partitions), []).append(item)
    assert len(harness.deltas) == len(expected) and by_partition == expected
    assert sent[b"b"].pairs == {"a": 1.0, "c": 1.0} and sent[b"b"].norm == 1.0

    async def item_side():
        async with harness.parts.item_agent.test_context(channel=harness.raw) as agent:
            for key, value in harness.deltas:
                await agent.put(value, key=key, wait=False)
            for _ in range(200):
                if len(harness.cache.get_neighbors(["a", "b", "c"])) == 3:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(item_side())
    rows = dict(harness.item_changelog)
    assert rows[b"a"]["p"] == {"b": 1.0, "c": 1.0}
    neighbors = harness.cache.get_neighbors(["a", "b", "c"])
    assert neighbors["a"] == [("b", 1.0), ("c", 1.0)]


def test_item_side_sends_an_undecodable_delta_message_to_the_dlq_and_applies_the_rest(harness):
    from models.online.stream.deltas import ItemDelta
    from stream_app.kafka.item_deltas import pack_deltas

    good = pack_deltas({("a", 0): ItemDelta(1.0, {"b": 1.0}, (0, 3))}, 1)[0]
    good_b = pack_deltas({("b", 0): ItemDelta(1.0, {"a": 1.0}, (0, 3))}, 1)[0]
    bad = [b"{truncated", b'[["a", "one", {}, 0, 4, {}]]', b'[["a", 5]]']

    async def item_side():
        async with harness.parts.item_agent.test_context(channel=harness.raw) as agent:
            for value in [good, bad[0], good_b, bad[1], bad[2]]:
                await agent.put(value, key=b"deltas", wait=False)
            for _ in range(200):
                if len(harness.dead) == 3 and harness.cache.get_neighbors(["a"]):
                    break
                await asyncio.sleep(0.01)

    asyncio.run(item_side())
    assert [letter.payload() for _, letter in harness.dead] == bad
    assert all("undecodable item deltas" in letter.reason for _, letter in harness.dead)
    journal = decode_entries(harness.cache.read_journal(CacheKeys().dead_letters, 10))
    assert [e["preview"] for e in journal] == [raw.decode() for raw in reversed(bad)]
    assert harness.cache.get_neighbors(["a"])["a"] == [("b", 1.0)]
    assert dict(harness.item_changelog)[b"a"]["p"] == {"b": 1.0}


def test_a_worker_thread_waits_for_the_delta_acks_on_the_event_loop():
    from stream_app.worker.user_side import _acks

    async def scenario() -> tuple[list[str], BaseException | None]:
        loop = asyncio.get_running_loop()
        done: list[str] = []
        acked, failed = loop.create_future(), loop.create_future()

        def in_thread() -> BaseException | None:
            _acks([acked, None], loop)()  # None: a recorder's result, not a future
            done.append("acked")
            try:
                _acks([failed], loop)()
            except RuntimeError as exc:
                return exc
            return None

        waiting = asyncio.create_task(asyncio.to_thread(in_thread))
        await asyncio.sleep(0.05)
        assert done == []  # still waiting for the broker
        acked.set_result(None)
        await asyncio.sleep(0.05)
        failed.set_exception(RuntimeError("produce failed"))
        return done, await waiting

    done, error = asyncio.run(scenario())
    assert done == ["acked"]
    assert isinstance(error, RuntimeError)


def test_item_rows_are_written_with_at_most_the_allowed_writes_waiting():
    """The item side's rows go out while the producer buffer drains, never flooding it (Faust's
    conductor stops every stream while over 100 writes wait)."""
    from stream_app.worker.item_side import write_paced

    class Buffer:  # stands in for Faust's ProducerBuffer: one write sent per look
        def __init__(self) -> None:
            self.waiting = 0
            self.looks = 0

        @property
        def size(self) -> int:
            self.looks += 1
            if self.waiting and self.looks % 3 == 0:
                self.waiting -= 1
            return self.waiting

    buffer = Buffer()
    written: list[tuple[bytes, int]] = []

    class Table(dict):
        def __setitem__(self, key, value) -> None:
            written.append((key, buffer.waiting))  # writes waiting when this one was set
            buffer.waiting += 1
            super().__setitem__(key, value)

    table = Table()
    rows = {f"i{n}".encode(): {"n": float(n)} for n in range(40)}
    asyncio.run(write_paced(table, rows, buffer, in_flight=5, poll_s=0))
    assert [key for key, _ in written] == list(rows)  # every row, in order
    assert max(waiting for _, waiting in written) < 5
    assert dict(table) == rows


def test_a_batch_runs_on_the_loop_until_redis_fails_then_in_a_thread_until_it_writes_again(
    monkeypatch, tmp_path
):
    """``Settings.batch_in_thread`` off: the batch runs on the event loop, except after a batch
    whose Redis work failed (its retries must not hold the loop) and while a session model
    serves (Keras inference must not run on the loop). The failed batch is held and retried
    in a thread until it is written, never dropped (its events would never be counted)."""
    import threading

    from stream_app.cache.base import CacheUnavailable
    from stream_app.worker.live_path import TrendingScorer

    class FlakyCache(MemoryCache):
        fail_next = False

        def update_trending(self, *args, **kwargs):
            if self.fail_next:
                self.fail_next = False
                raise CacheUnavailable("redis is down")
            return super().update_trending(*args, **kwargs)

    class RecordingScorer:  # trending, noting where each batch was scored
        def __init__(self) -> None:
            self.inner = TrendingScorer()
            self.versions = self.inner.versions
            self.threads: list[bool] = []  # per scored batch: on the event loop's thread?

        def candidates_needed(self, n: int, history_len: int) -> int:
            return self.inner.candidates_needed(n, history_len)

        def learn_batch(
            self,
            events: Sequence[Interaction],
            before: Mapping[str, Sequence[str]],
            partitions: Sequence[int],
        ) -> None:
            self.inner.learn_batch(events, before, partitions)

        def checkpoint(self) -> Mapping[str, bytes]:
            return self.inner.checkpoint()

        def checkpointed(self) -> None:
            self.inner.checkpointed()

        def recommend_batch(self, histories, trending, n, excluded=None, *, between_batches=False):
            self.threads.append(threading.current_thread() is threading.main_thread())
            return self.inner.recommend_batch(
                histories, trending, n, excluded, between_batches=between_batches
            )

    settings = Settings(
        app_id="unit-agent-where",
        batch_max_events=10,
        batch_max_delay_s=0.01,
        state_dir=tmp_path,
    )
    app = _unit_app(settings, tmp_path)
    cache = FlakyCache()
    scorer = RecordingScorer()
    parts = register_live_path(app, settings, scorer=scorer, cache=cache)

    async def ignore(*args, **kwargs):
        return None

    monkeypatch.setattr(parts.dlq_topic, "send", ignore)
    monkeypatch.setattr(parts.deltas_topic, "send", ignore)
    monkeypatch.setattr(
        parts.history,
        "send_changelog",
        lambda *a, **k: SimpleNamespace(message=SimpleNamespace(partition=0)),
    )
    monkeypatch.setattr(parts.slot, "current", lambda: serving.get("model"))
    serving: dict[str, object] = {}
    raw = app.channel(
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
    )

    async def one_batch(agent, user: str, scored_before: int) -> None:
        await agent.put(_event(user, "a"), key=user.encode(), wait=False)
        for _ in range(300):
            if len(scorer.threads) > scored_before:
                break
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        async with parts.agent.test_context(channel=raw) as agent:
            await one_batch(agent, "u1", 0)  # healthy: on the loop
            cache.fail_next = True
            await agent.put(_event("u2", "a"), key=b"u2", wait=False)  # fails on the loop
            for _ in range(300):
                if not cache.fail_next:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert len(scorer.threads) == 1  # the failed batch was not scored yet
            assert cache.get_recs("u2") is None
            for _ in range(300):  # held, then retried in a thread: scored and written
                if cache.get_recs("u2") is not None:
                    break
                await asyncio.sleep(0.01)
            assert cache.get_recs("u2") is not None and len(scorer.threads) == 2
            await one_batch(agent, "u3", 2)  # healthy again: back on the loop
            serving["model"] = object()
            await one_batch(agent, "u4", 3)  # a session model serves: in a thread

    asyncio.run(scenario())
    assert scorer.threads == [True, False, True, False]
    assert cache.get_stats()["events"] == 4 and cache.get_stats()["redis_errors"] == 1


def test_catalog_side_mirrors_records_hides_and_tombstones_and_dead_letters_the_rest(harness):
    from models.catalog import ItemRecord, encode_item

    star = ItemRecord("50", "Star Wars (1977)", ("Sci-Fi",), {"year": 1977})
    hidden = ItemRecord("7", "Sold out", ("shop",), hidden=True)
    bad = [
        (b"8", b'{"item_id": "8"}'),  # no title
        (b"9", b'{"item_id": "10", "title": "Wrong key"}'),
        (None, encode_item(star)),
    ]
    first = [
        (b"50", encode_item(ItemRecord("50", "Old title"))),
        (b"50", encode_item(star)),  # the newer record of a key wins
        bad[0],
        (b"7", encode_item(hidden)),
        (b"gone", encode_item(ItemRecord("gone", "Gone"))),
        bad[1],
    ]
    then = [(b"gone", None), bad[2]]  # the tombstone of an item already mirrored

    async def catalog():
        async with harness.parts.catalog_agent.test_context(channel=harness.raw) as agent:
            for step, (messages, want) in enumerate([(first, ["gone"]), (then, [])]):
                for key, value in messages:
                    await agent.put(value, key=key, wait=False)
                for _ in range(200):  # until the step is applied
                    done = harness.cache.get_item_meta(["7", "gone"]).keys() == {"7", *want}
                    if done and len(harness.dead) == 2 + step:
                        break
                    await asyncio.sleep(0.01)

    mentioned, expected = ["50", "7", "gone", "8", "10"], {"50": star, "7": hidden}
    asyncio.run(catalog())
    assert harness.cache.get_item_meta(mentioned) == expected
    assert harness.cache.hidden_items() == {"7"}
    assert harness.cache.deleted_items() == {"gone"}
    assert [letter.payload() for _, letter in harness.dead] == [value for _, value in bad]
    assert harness.cache.get_stats()["catalog_dlq"] == 3
    reasons = [letter.reason for _, letter in harness.dead]
    assert reasons == [
        "item record: title must be a non-empty string",
        "item record: key '9' is not the record's item_id '10'",
        "item record: item records are keyed by item_id; the key is missing",
    ]
    journal = decode_entries(harness.cache.read_journal(CacheKeys().dead_letters, 10))
    assert [e["reason"] for e in journal] == list(reversed(reasons))
