"""The read-time filters of ``GET /recommendations/{user}``: ``exclude=`` ids, ``category=``
(any of), and what is never served (hidden or deleted items, the user's recent items).

Pure: the route reads the store, these decide what of it is served and why. The worker cannot
know what an app shows next to a list or which category a page is about, so these are applied
per request rather than baked into the cached list. docs/api.md says what each one covers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from multidict import MultiMapping

from models.catalog import MAX_CATEGORIES, ItemRecord
from models.events import MAX_ID_LENGTH
from models.online.stream.reasons import reason_source, titled
from stream_app.api.context import BadRequest, checked_id
from stream_app.api.store import CatalogView

#: Most ids one request may exclude: enough for a page's worth of shown items, and a bound on
#: the query string the API parses for every request.
MAX_EXCLUDE = 500

#: Trending items the fill reads (with their catalog records, in one round trip) when the
#: filters leave fewer than ``n``: a category rarer than that in the head is not found.
FILL_DEPTH = 500


def _pieces(values: Iterable[str]) -> list[str]:
    """Every comma-separated piece of a parameter given once or repeated; an empty parameter
    (``exclude=``) gives none, an empty piece inside a list is kept for the caller to refuse."""
    return [piece for value in values if value != "" for piece in value.split(",")]


def parse_exclude(values: Iterable[str]) -> frozenset[str]:
    """The ``exclude=`` ids, each by the event contract's id rule, at most ``MAX_EXCLUDE``.

    >>> sorted(parse_exclude(["a,b", "c", ""]))
    ['a', 'b', 'c']
    >>> parse_exclude(["a,,b"])
    Traceback (most recent call last):
    ...
    stream_app.api.context.BadRequest: exclude id must be a non-empty string or integer
    """
    pieces = _pieces(values)
    if len(pieces) > MAX_EXCLUDE:
        raise BadRequest(f"exclude holds at most {MAX_EXCLUDE} item ids, got {len(pieces)}")
    return frozenset(checked_id(piece, "exclude id") for piece in pieces)


def parse_categories(values: Iterable[str]) -> tuple[str, ...]:
    """The ``category=`` names, in the order asked (the fill's reason names the first one an
    item has), by the catalog's rule for a category: non-empty, at most 256 characters.

    >>> parse_categories(["Comedy,Drama", "Comedy"])
    ('Comedy', 'Drama')
    """
    pieces = _pieces(values)
    if len(pieces) > MAX_CATEGORIES:
        raise BadRequest(f"category holds at most {MAX_CATEGORIES} categories, got {len(pieces)}")
    for piece in pieces:
        if not piece.strip():
            raise BadRequest("category must be a non-empty string")
        if len(piece) > MAX_ID_LENGTH:
            raise BadRequest(f"category longer than {MAX_ID_LENGTH} characters")
    return tuple(dict.fromkeys(pieces))


@dataclass(frozen=True, slots=True)
class ReadFilters:
    """What one request asked not to be served (``exclude``) and what it asked for
    (``categories``, any of; empty: every category).

    >>> f = ReadFilters(frozenset({"b"}), ("War",))
    >>> meta = {"a": ItemRecord("a", "A", ("War",)), "b": ItemRecord("b", "B", ("War",))}
    >>> [i for i in "abc" if f.allows(i, CatalogView(meta))]
    ['a']
    """

    exclude: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> ReadFilters:
        return cls(
            parse_exclude(query.getall("exclude", [])),
            parse_categories(query.getall("category", [])),
        )

    @property
    def active(self) -> bool:
        """Whether the request filters at all: only then is a short answer filled from trending."""
        return bool(self.exclude or self.categories)

    def category_of(self, record: ItemRecord | None) -> str | None:
        """The first asked category ``record`` has; None when it has none of them (an item
        the catalog does not know has no category)."""
        if record is None:
            return None
        return next((c for c in self.categories if c in record.categories), None)

    def allows(self, item_id: str, catalog: CatalogView, seen: Collection[str] = ()) -> bool:
        """Whether ``item_id`` may be served: not hidden or deleted, not excluded, not in
        ``seen``, and of an asked category when categories were asked."""
        if item_id in catalog.hidden or item_id in self.exclude or item_id in seen:
            return False
        return not self.categories or self.category_of(catalog.meta.get(item_id)) is not None

    def trending_reason(self, record: ItemRecord | None) -> str:
        """The reason of an item filled from trending: the category it was picked for.

        >>> ReadFilters(categories=("Comedy",)).trending_reason(ItemRecord("a", "A", ("Comedy",)))
        'trending in Comedy'
        >>> ReadFilters().trending_reason(None)
        'trending now'
        """
        category = self.category_of(record) if self.categories else None
        return f"trending in {category}" if category is not None else "trending now"

    def why_empty(self, had_list: bool, trending_read: int | None) -> str:
        """Why nothing is served: what was searched (the user's cached list, the trending
        items read: None when not read) and what was left out of it.

        >>> ReadFilters(categories=("Comedy", "Drama")).why_empty(True, 500)[:74]
        "no item of category 'Comedy' or 'Drama' in the user's list or the 500 most"
        >>> ReadFilters().why_empty(False, 0)
        'no item in trending (nothing is trending yet) once hidden and deleted items are left out'
        """
        what = "no item"
        if self.categories:
            what += " of category " + " or ".join(repr(c) for c in self.categories)
        places = ["the user's list"] if had_list else []
        if trending_read:
            places.append(f"the {trending_read} most trending items")
        elif trending_read == 0:
            places.append("trending (nothing is trending yet)")
        left_out = ["hidden", "deleted"]
        left_out += ["excluded"] if self.exclude else []
        left_out += ["recently consumed"] if had_list else []
        listed = ", ".join(left_out[:-1]) + " and " + left_out[-1]
        return f"{what} in {' or '.join(places)} once {listed} items are left out"


def trending_fill(
    trending: Sequence[tuple[str, float]],
    catalog: CatalogView,
    filters: ReadFilters,
    n: int,
    skip: Collection[str] = (),
    suffix: str = "",
) -> list[dict]:
    """At most ``n`` trending items the filters allow and ``skip`` does not hold (items already
    in the answer, the user's recent ones), best first, each with the reason it was picked
    (``suffix`` appended) and described by ``catalog``.

    >>> view = CatalogView({"b": ItemRecord("b", "B", ("War",))})
    >>> [(i["item_id"], i["reason"]) for i in trending_fill(
    ...     [("a", 2.0), ("b", 1.0)], view, ReadFilters(categories=("War",)), 5)]
    [('b', 'trending in War')]
    """
    out: list[dict] = []
    for item, score in trending:
        if len(out) == n:
            break
        if item in skip or not filters.allows(item, catalog):
            continue
        reason = filters.trending_reason(catalog.meta.get(item)) + suffix
        picked = {"item_id": item, "score": round(score, 6), "reason": reason}
        out.append(described(picked, catalog))
    return out


NO_CATALOG = CatalogView({})


def described(item: dict, catalog: CatalogView) -> dict:
    """An answer's item with its ``title`` and ``categories`` added when the catalog has it,
    and, when its reason names a history item, that item as ``because_item_id`` and its
    title in the reason (:func:`reason_sources` says which records to read).

    >>> sw = CatalogView({"50": ItemRecord("50", "Star Wars", ("War",))})
    >>> described({"item_id": "50"}, sw)
    {'item_id': '50', 'title': 'Star Wars', 'categories': ['War']}
    >>> described({"item_id": "51", "reason": "because you viewed 50"}, sw)
    {'item_id': '51', 'reason': 'because you viewed Star Wars', 'because_item_id': '50'}
    """
    out = dict(item)
    source = reason_source(item.get("reason", ""))
    if source is not None:
        named = catalog.meta.get(source)
        names = {source: named.title} if named is not None and named.title else {}
        out["reason"], out["because_item_id"] = titled(item["reason"], names), source
    record = catalog.meta.get(item["item_id"])
    if record is not None:
        out.update(title=record.title, categories=list(record.categories))
    return out


def reason_sources(reasons: Iterable[str]) -> list[str]:
    """The history items these reasons name, each once (their titles go into the reasons).

    >>> reason_sources(["because you viewed a", "trending now", "often after a"])
    ['a']
    """
    found = (reason_source(r) for r in reasons)
    return list(dict.fromkeys(s for s in found if s is not None))
