"""The reasons the stream model gives, as data: which history item a reason names, the verb of
the user's own act on it ("because you rated 50 5 stars"), and the same reason with that item's
title. The worker stores reasons with item ids (the catalog can change after a list is written);
readers (the API, ``streamrec watch``) put titles in at read time, from the catalog as it is then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

#: "because you viewed X": X is the recent item whose neighbour list gave most
SIMILAR_TO = "because you viewed "
#: "often next after X": X is the user's last item, the candidate its most frequent successor
NEXT_AFTER = "often next after "
#: "often after X": X is an earlier item of the user's path
AFTER = "often after "

#: How a reason names an item the user acted on, by her newest act on it (``view`` is the
#: default and is not stored); ``{item}`` is the item, ``{value}`` a rating's stars.
ACT_PHRASES: dict[str, str] = {
    "view": "because you viewed {item}",
    "click": "because you clicked {item}",
    "add_to_cart": "because you added {item} to your cart",
    "purchase": "because you bought {item}",
    "rating": "because you rated {item} {value}",
}
#: Acts remembered per user: those of her newest items, the ones a reason can name.
ACTS_KEPT = 20

_ITEM = "(?P<item>.+)"
_PATTERNS = [
    re.compile(
        "^"
        + re.escape(p)
        .replace(re.escape("{item}"), _ITEM)
        .replace(re.escape("{value}"), r"\S+ stars?")
        + "$",
        re.DOTALL,
    )
    for p in ACT_PHRASES.values()
] + [re.compile(f"^{re.escape(prefix)}{_ITEM}$", re.DOTALL) for prefix in (NEXT_AFTER, AFTER)]


def act_of(event_type: str, value: float | None) -> str | None:
    """How a positive event is remembered for reasons: None for a view (the default verb),
    ``rating:5`` for a rating, the event type otherwise.

    >>> act_of("view", None), act_of("rating", 4.0), act_of("rating", 3.5), act_of("purchase", 1)
    (None, 'rating:4', 'rating:3.5', 'purchase')
    """
    if event_type == "view" or event_type not in ACT_PHRASES:
        return None
    if event_type == "rating" and value is not None:
        return f"rating:{value:g}"
    return event_type


def merge_acts(
    old: Mapping[str, str], new: Iterable[tuple[str, str | None]], items: Sequence[str]
) -> dict[str, str]:
    """The newest act per item after ``new`` ((item, act) in event order; None: a view), kept
    for the newest :data:`ACTS_KEPT` of ``items`` only.

    >>> merge_acts({"a": "purchase"}, [("b", "rating:5"), ("a", None)], ["a", "b"])
    {'b': 'rating:5'}
    """
    acts = dict(old)
    for item, act in new:
        if act is None:
            acts.pop(item, None)
        else:
            acts[item] = act
    recent = set(items[-ACTS_KEPT:])
    return {item: act for item, act in acts.items() if item in recent}


def phrase(act: str | None, item: str) -> str:
    """The reason naming ``item`` with the user's act on it.

    >>> phrase("rating:5", "Star Wars (1977)")
    'because you rated Star Wars (1977) 5 stars'
    >>> phrase("rating:1", "x"), phrase("add_to_cart", "x"), phrase(None, "x")
    ('because you rated x 1 star', 'because you added x to your cart', 'because you viewed x')
    """
    kind, _, value = (act or "view").partition(":")
    template = ACT_PHRASES.get(kind, ACT_PHRASES["view"])
    stars = f"{value} star" if value in ("1", "1.0") else f"{value} stars"
    return template.format(item=item, value=stars)


R = TypeVar("R")


def with_acts(recs: Sequence[R], acts: Mapping[str, str] | None) -> list[R]:
    """``recs`` (named tuples with a ``reason``) whose "because you viewed X" names an item the
    user did more with: the verb of her newest act on it."""
    if not acts:
        return list(recs)
    out = []
    for rec in recs:
        reason: str = rec.reason  # type: ignore[attr-defined]
        if reason.startswith(SIMILAR_TO):
            act = acts.get(reason[len(SIMILAR_TO) :])
            if act is not None:
                rec = rec._replace(reason=phrase(act, reason[len(SIMILAR_TO) :]))  # type: ignore[attr-defined]
        out.append(rec)
    return out


def _named(reason: str) -> Any:
    for pattern in _PATTERNS:
        found = pattern.match(reason)
        if found is not None:
            return found
    return None


def reason_source(reason: str) -> str | None:
    """The history item a reason names, or None for one that names none ("trending now").

    >>> reason_source("because you viewed 242"), reason_source("trending now")
    ('242', None)
    >>> reason_source("because you rated 5 4 stars")
    '5'
    >>> reason_source("because you added a b to your cart")
    'a b'
    """
    found = _named(reason)
    return None if found is None else found.group("item")


def titled(reason: str, titles: Mapping[str, str]) -> str:
    """The reason with the item it names replaced by that item's title, when known.

    >>> titled("often next after 50", {"50": "Star Wars (1977)"})
    'often next after Star Wars (1977)'
    >>> titled("because you rated 50 5 stars", {"50": "Star Wars (1977)"})
    'because you rated Star Wars (1977) 5 stars'
    >>> titled("because you viewed 9", {})
    'because you viewed 9'
    """
    found = _named(reason)
    if found is None or found.group("item") not in titles:
        return reason
    start, end = found.span("item")
    return reason[:start] + titles[found.group("item")] + reason[end:]
