"""The in-memory dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.catalog import ItemRecord
from models.events import Interaction

#: How same-timestamp events are ordered: ``id`` by user then item (our default, reproducible
#: whatever order a file lists them in), ``file`` as the source lists them (RecBole's order).
TIE_ORDERS = ("id", "file")


def chronological_key(event: Interaction) -> tuple[int, str, str]:
    """Stream order: timestamp, then user, then item (the evaluator's documented tie rule)."""
    return (event.timestamp_ms, event.user_id, event.item_id)


@dataclass(slots=True)
class EventDataset:
    """Events in stream order plus an optional item catalog.

    ``items`` (item_id -> attributes) is what the offline content features read; ``catalog``
    the same items as records of the ``items`` topic's contract (``streamrec produce --items``
    publishes them; empty for data without one). ``planted`` holds the ground truth of
    generated data (None for real data), so tests and benchmarks can check that a model
    recovers it.
    """

    name: str
    events: list[Interaction]
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    planted: Any = None
    catalog: list[ItemRecord] = field(default_factory=list)

    def sort(self, tie_order: str = "id") -> EventDataset:
        """Events by time; ties by ``tie_order`` (``file``: a stable sort keeps the source's
        order, as RecBole does)."""
        if tie_order not in TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {', '.join(TIE_ORDERS)}")
        if tie_order == "file":
            self.events.sort(key=lambda e: e.timestamp_ms)
        else:
            self.events.sort(key=chronological_key)
        return self

    @property
    def n_users(self) -> int:
        return len({e.user_id for e in self.events})

    @property
    def n_items(self) -> int:
        return len({e.item_id for e in self.events})
