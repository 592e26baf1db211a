"""The one place Redis clients are opened, sync and asyncio alike, from a ``RedisAccess``.

Why one place: the worker's cache, the API's store, ``watch`` and the commands must all use
the same credentials (in the URL), the same TLS files and checks (``rediss://``) and the same
kind of client (``redis+cluster://`` opens redis-py's ``RedisCluster``); a client opened
elsewhere would fail only on a secured Redis or a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import RedisCluster

from stream_app.settings import RedisAccess

if TYPE_CHECKING:
    import redis.asyncio


def as_access(target: RedisAccess | str) -> RedisAccess:
    """A bare URL is an access without TLS files (its ``user:password@`` still logs in)."""
    return RedisAccess(target) if isinstance(target, str) else target


def redis_options(access: RedisAccess) -> dict[str, Any]:
    """redis-py's TLS keyword arguments for ``access`` (none for ``redis://``).

    >>> redis_options(RedisAccess("redis://h:6379/0"))
    {}
    >>> redis_options(RedisAccess("rediss://h:6380/0", tls_verify="none"))
    {'ssl_cert_reqs': 'none', 'ssl_check_hostname': False}
    """
    if not access.uses_tls:
        return {}
    options: dict[str, Any] = {
        "ssl_cert_reqs": access.tls_verify,
        # Python refuses CERT_NONE with the host name checked; "optional" still checks it.
        "ssl_check_hostname": access.tls_verify != "none",
    }
    if access.tls_ca_file is not None:
        options["ssl_ca_certs"] = str(access.tls_ca_file)
    if access.tls_cert_file is not None:
        options["ssl_certfile"] = str(access.tls_cert_file)
    if access.tls_key_file is not None:
        options["ssl_keyfile"] = str(access.tls_key_file)
    return options


#: Any sync client ``connect_redis`` opens.
SyncRedis = redis.Redis | RedisCluster


def connect_redis(target: RedisAccess | str, **client_options: Any) -> SyncRedis:
    """A redis-py client (connecting lazily) for ``target``, with ``client_options`` (timeouts,
    retries) added: a ``RedisCluster`` for a ``redis+cluster://`` URL (it asks the node it is
    given for the others, and follows a failover by asking again)."""
    access = as_access(target)
    if access.cluster:
        return RedisCluster.from_url(
            access.client_url, **redis_options(access), **_cluster_options(client_options)
        )
    return redis.Redis.from_url(access.url, **redis_options(access), **client_options)


def _cluster_options(client_options: dict[str, Any]) -> dict[str, Any]:
    """``client_options`` for ``RedisCluster``: its own retry (which re-reads the slot map
    after a connection error, so a retried command finds the promoted replica) replaces the
    per-connection ``retry_on_error``, which would keep retrying the node that died."""
    options = dict(client_options)
    options.pop("retry_on_error", None)
    return options


def mget(client: Any, keys: Sequence[str]) -> list[Any]:
    """``MGET keys`` on one Redis; on a cluster, one MGET per hash slot (a cluster refuses an
    MGET across slots) in one pipelined round trip per node, the values in ``keys``' order."""
    if isinstance(client, RedisCluster):
        return list(client.mget_nonatomic(list(keys)))
    return list(client.mget(list(keys)))


def connect_redis_async(
    target: RedisAccess | str,
    *,
    max_connections: int,
    pool_wait_s: float,
    **client_options: Any,
) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """The asyncio client for ``target``, as ``connect_redis`` (the API's store uses it), over
    a blocking pool: past ``max_connections`` reads in flight a request waits up to
    ``pool_wait_s`` for a connection (redis-py's default pool raises at once). The cluster
    client has no blocking pool: there ``max_connections`` bounds each node's connections."""
    import redis.asyncio as aioredis

    access = as_access(target)
    if access.cluster:
        return aioredis.RedisCluster.from_url(
            access.client_url,
            max_connections=max_connections,
            **redis_options(access),
            **_cluster_options(client_options),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        access.url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        **redis_options(access),
        **client_options,
    )
    return aioredis.Redis.from_pool(pool)
