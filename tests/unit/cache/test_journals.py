"""The dashboard's journals in the reference backend, and ``UserRecs.recent`` on the wire
(the Redis backend runs the same journal checks in tests/integration/test_cache_contract.py)."""

from __future__ import annotations

from stream_app.cache import MemoryCache
from stream_app.cache.base import Recommendation, UserRecs
from stream_app.cache.journals import decode_entries, encode_entry


def test_a_journal_keeps_the_newest_entries_newest_first() -> None:
    cache = MemoryCache()
    cache.append_journal("j", [encode_entry({"n": 1}), encode_entry({"n": 2})], keep=3)
    cache.append_journal("j", [encode_entry({"n": 3}), encode_entry({"n": 4})], keep=3)
    assert [e["n"] for e in decode_entries(cache.read_journal("j", 10))] == [4, 3, 2]
    assert [e["n"] for e in decode_entries(cache.read_journal("j", 2))] == [4, 3]
    assert cache.read_journal("other", 5) == []


def test_recent_history_rides_with_the_list_and_old_lists_read_without_it() -> None:
    recs = UserRecs("u", (Recommendation("i", 1.0, "r"),), {}, 5, ("a", "b"))
    assert UserRecs.from_json(recs.to_json()).recent == ("a", "b")
    old = b'{"user_id":"u","items":[],"model_versions":{},"computed_at":5}'
    assert UserRecs.from_json(old).recent == ()
