"""What every route of the read API shares: the typed app keys it reads its store and probe
under, the client-error type and the validation of ids and ``n``.

Apart from ``server`` so that the route modules (``server``, ``dashboard``) import it rather
than each other.
"""

from __future__ import annotations

from aiohttp import web

from models.events import InvalidEvent, valid_id
from stream_app.api.health import HealthPolicy
from stream_app.api.lag import LagProbe
from stream_app.api.store import ReadStore

DEFAULT_N = 10


MAX_N = 100


STORE_KEY: web.AppKey[ReadStore] = web.AppKey("store")


LAG_KEY: web.AppKey[LagProbe | None] = web.AppKey("lag_probe")


PARTITIONS_KEY: web.AppKey[int] = web.AppKey("ranker_partitions")


HEALTH_KEY: web.AppKey[HealthPolicy] = web.AppKey("health_policy")


class BadRequest(ValueError):
    """A client error; the message is returned to the client."""


def parse_n(raw: str | None, default: int = DEFAULT_N, max_n: int = MAX_N) -> int:
    """The ``n`` query parameter, validated (1..``max_n``).

    >>> parse_n(None), parse_n("25")
    (10, 25)
    >>> parse_n("0")
    Traceback (most recent call last):
    ...
    stream_app.api.context.BadRequest: n must be an integer between 1 and 100
    """
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= max_n:
        raise BadRequest(f"n must be an integer between 1 and {max_n}")
    return value


def checked_id(raw: str, name: str) -> str:
    """An id the API was given, by the event contract's own rule (``models.events.valid_id``):
    an id no event can carry can have nothing stored under it, and a megabyte id should not
    reach Redis. Stripped as the workers store it; a break is a 400 naming the rule.

    >>> checked_id(" u1 ", "user_id")
    'u1'
    >>> checked_id("x" * 257, "item_id")
    Traceback (most recent call last):
    ...
    stream_app.api.context.BadRequest: item_id longer than 256 characters
    >>> checked_id("  ", "user_id")
    Traceback (most recent call last):
    ...
    stream_app.api.context.BadRequest: user_id must be a non-empty string or integer
    """
    try:
        return valid_id(raw, name)
    except InvalidEvent as exc:
        raise BadRequest(str(exc)) from None
