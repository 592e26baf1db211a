"""The in-memory dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.events import Interaction


def chronological_key(event: Interaction) -> tuple[int, str, str]:
    """Stream order: timestamp, then user, then item (the evaluator's documented tie rule)."""
    return (event.timestamp_ms, event.user_id, event.item_id)


@dataclass(slots=True)
class EventDataset:
    """Events in stream order plus an optional item catalog (item_id -> attributes).

    ``planted`` holds the ground truth of generated data (None for real data), so tests and
    benchmarks can check that a model recovers it.
    """

    name: str
    events: list[Interaction]
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    planted: Any = None

    def sort(self) -> EventDataset:
        self.events.sort(key=chronological_key)
        return self

    @property
    def n_users(self) -> int:
        return len({e.user_id for e in self.events})

    @property
    def n_items(self) -> int:
        return len({e.item_id for e in self.events})
