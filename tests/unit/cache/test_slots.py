"""Slot grouping for Redis Cluster, without a cluster: the CRC16 rule and hash tags, and that
cutting a bulk write by slot keeps every key, its value and a slot per group."""

from __future__ import annotations

from stream_app.cache.keys import CacheKeys
from stream_app.cache.slots import slot_of, split_by_slot


def test_slots_follow_redis_cluster_crc16_and_hash_tags():
    # Values from the Redis Cluster specification's examples (CRC16-XMODEM mod 16384).
    assert slot_of("123456789") == 0x31C3 % 16384
    assert slot_of("{user1000}.following") == slot_of("{user1000}.followers")
    assert slot_of("foo{}{bar}") != slot_of("bar")  # an empty tag: the whole key is hashed
    assert slot_of("foo{{bar}}zap") == slot_of("{bar")  # the first '{' to the next '}'


def test_split_by_slot_keeps_every_key_once_with_its_value_and_one_slot_per_group():
    keys = CacheKeys("streamrec:v1", cluster=True)
    values = {keys.recs(f"u{i}"): f"v{i}".encode() for i in range(500)}
    groups = split_by_slot(values)
    assert sum(len(g) for g in groups) == 500
    assert {k: v for g in groups for k, v in g.items()} == values
    assert all(len({slot_of(k) for k in g}) == 1 for g in groups)
    assert len({slot_of(next(iter(g))) for g in groups}) == len(groups)  # one group per slot


def test_one_slot_is_one_group_in_the_order_given():
    keys = CacheKeys("streamrec:v1", cluster=True)
    shared = {keys.stat("events"): 1, keys.hwm("events"): 2, keys.ranker(0): 3}
    assert split_by_slot(shared) == [shared]
    assert list(split_by_slot(shared)[0]) == list(shared)
    assert split_by_slot({}) == []


def test_only_the_shared_keys_carry_the_hash_tag_and_single_redis_keys_are_unchanged():
    single, cluster = CacheKeys("streamrec:v1"), CacheKeys("streamrec:v1", cluster=True)
    assert single.trending == "streamrec:v1:trending"
    assert cluster.trending == "{streamrec:v1}:trending"
    assert cluster.recs("u") == single.recs("u") == "streamrec:v1:recs:u"
    assert cluster.user_from_recs_key(cluster.recs("u:7")) == "u:7"
    assert cluster.item_meta("i") == single.item_meta("i")
