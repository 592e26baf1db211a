"""The reasons the stream model gives, as data: which history item a reason names, and the
same reason with that item's title. The worker stores reasons with item ids (the catalog can
change after a list is written); readers (the API, ``streamrec watch``) put titles in at read
time, from the catalog as it is then.
"""

from __future__ import annotations

from collections.abc import Mapping

#: "because you viewed X": X is the recent item whose neighbour list gave most
SIMILAR_TO = "because you viewed "
#: "often next after X": X is the user's last item, the candidate its most frequent successor
NEXT_AFTER = "often next after "
#: "often after X": X is an earlier item of the user's path
AFTER = "often after "

_NAMING = (SIMILAR_TO, NEXT_AFTER, AFTER)


def reason_source(reason: str) -> str | None:
    """The history item a reason names, or None for one that names none ("trending now").

    >>> reason_source("because you viewed 242"), reason_source("trending now")
    ('242', None)
    """
    for prefix in _NAMING:
        if reason.startswith(prefix) and len(reason) > len(prefix):
            return reason[len(prefix) :]
    return None


def titled(reason: str, titles: Mapping[str, str]) -> str:
    """The reason with the item it names replaced by that item's title, when known.

    >>> titled("often next after 50", {"50": "Star Wars (1977)"})
    'often next after Star Wars (1977)'
    >>> titled("because you viewed 9", {})
    'because you viewed 9'
    """
    source = reason_source(reason)
    if source is None or source not in titles:
        return reason
    return reason[: len(reason) - len(source)] + titles[source]
