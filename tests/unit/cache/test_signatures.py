"""The cache backends and the tests' fakes keep the ``RecCache`` protocol's signatures.

A runtime ``isinstance`` against a ``Protocol`` only checks that the method names exist; a fake
whose ``write_batch`` lacked a parameter once made production code carry a branch just for it.
Here every protocol method's parameters (names, kinds, defaults) must be the same in each
implementation, so a fake cannot drift from the real signature unnoticed.
"""

from __future__ import annotations

import inspect

import pytest

from stream_app.cache import MemoryCache, RecCache
from stream_app.cache.redis_backend import RedisCache

PROTOCOL_METHODS = sorted(
    name for name, member in vars(RecCache).items() if callable(member) and not name.startswith("_")
)


def _parameters(method: object) -> list[tuple[str, object, object]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(method).parameters.values()  # type: ignore[arg-type]
    ]


def test_the_protocol_has_the_methods_the_worker_calls() -> None:
    # not empty, and the ones the batch path depends on are in it
    assert {"write_batch", "update_trending", "get_recs", "read_state"} <= set(PROTOCOL_METHODS)


@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_backends_keep_the_protocol_signature(method: str, flaky_cache) -> None:
    expected = _parameters(getattr(RecCache, method))
    for implementation in (MemoryCache, RedisCache, type(flaky_cache)):
        assert _parameters(getattr(implementation, method)) == expected, implementation
