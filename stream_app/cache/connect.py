"""The one place Redis clients are opened, sync and asyncio alike, from a ``RedisAccess``.

Why one place: the worker's cache, the API's store, ``watch`` and the commands must all use
the same credentials (in the URL) and the same TLS files and checks (``rediss://``); a client
opened elsewhere would connect without them and fail only on a secured Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis

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


def connect_redis(target: RedisAccess | str, **client_options: Any) -> redis.Redis:
    """A redis-py client (connecting lazily) for ``target``, with ``client_options`` (timeouts,
    retries) added."""
    access = as_access(target)
    return redis.Redis.from_url(access.url, **redis_options(access), **client_options)


def connect_redis_async(
    target: RedisAccess | str,
    *,
    max_connections: int,
    pool_wait_s: float,
    **client_options: Any,
) -> redis.asyncio.Redis:
    """The asyncio client for ``target``, as ``connect_redis`` (the API's store uses it), over
    a blocking pool: past ``max_connections`` reads in flight a request waits up to
    ``pool_wait_s`` for a connection (redis-py's default pool raises at once)."""
    import redis.asyncio as aioredis

    access = as_access(target)
    pool = aioredis.BlockingConnectionPool.from_url(
        access.url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        **redis_options(access),
        **client_options,
    )
    return aioredis.Redis.from_pool(pool)
