"""Capped lists of what happened lately, for the dashboard: the newest dead letters and the
session-model slot's decisions (swaps and refusals with the gate's reason). Each entry is one
JSON object; the worker pushes them (``RecCache.append_journal``), newest first, and trims."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

#: Dead letters kept in ``CacheKeys.dead_letters`` (the topic keeps them all).
DEAD_LETTERS_KEPT = 20
#: Decisions kept in ``CacheKeys.model_decisions``.
MODEL_DECISIONS_KEPT = 50


def encode_entry(entry: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(entry))


def decode_entries(raws: Iterable[bytes | str]) -> list[dict[str, Any]]:
    """The entries that are JSON objects, in order; anything else is left out, never raised.

    >>> decode_entries([b'{"reason": "x"}', b"not json", b"[1]"])
    [{'reason': 'x'}]
    """
    out = []
    for raw in raws:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out
