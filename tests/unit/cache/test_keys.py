"""The key builder: one documented, versioned key schema."""

import pytest

from stream_app.cache.keys import STAT_NAMES, CacheKeys
from stream_app.settings import Settings


def test_keys_use_the_settings_version_prefix():
    keys = CacheKeys(Settings().redis_key_prefix)
    assert keys.recs("u42") == "streamrec:v1:recs:u42"
    assert keys.trending == "streamrec:v1:trending"
    assert keys.trending_epoch == "streamrec:v1:trending:epoch"
    assert keys.neighbors("i7") == "streamrec:v1:neighbors:i7"
    assert keys.stat("events") == "streamrec:v1:stats:events"
    assert keys.recs_pattern == "streamrec:v1:recs:*"


@pytest.mark.parametrize("user", ["u1", "user:with:colons", "ü-ñ", "1"])
def test_recs_key_round_trips_user_ids(user):
    keys = CacheKeys("p:v9")
    assert keys.user_from_recs_key(keys.recs(user)) == user


def test_foreign_keys_and_unknown_stats_are_refused():
    keys = CacheKeys()
    with pytest.raises(ValueError, match="not a recommendations key"):
        keys.user_from_recs_key("other:v1:recs:u1")
    with pytest.raises(ValueError, match="unknown stat"):
        keys.stat("evnets")
    with pytest.raises(ValueError, match="prefix"):
        CacheKeys("streamrec:v1:")


def test_every_stat_has_a_distinct_key():
    keys = CacheKeys()
    assert len({keys.stat(n) for n in STAT_NAMES}) == len(STAT_NAMES)
