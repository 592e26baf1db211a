"""Which partition a key lands on: the rule of Kafka's default partitioner.

The worker's state is split the way Kafka splits the topics (users on the events topic, items on
the item-deltas topic), and the in-process model splits its learners the same way, so a replay
offline learns what the partitioned worker learns.
"""

from __future__ import annotations

import functools

from kafka.partitioner.default import murmur2


@functools.lru_cache(maxsize=1 << 18)
def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client, aiokafka and
    kafka-python use) gives the UTF-8 key ``key``. Cached: kafka-python's murmur2 is pure
    Python and every batch asks again for most keys.

    >>> murmur2(b"21") == -973932308 & 0xFFFFFFFF   # a vector of Kafka's own UtilsTest
    True
    >>> [key_partition(k, 4) for k in ("1", "2", "3", "4", "5")]
    [3, 0, 3, 1, 2]
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
