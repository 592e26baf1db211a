"""Event files in the contract: JSON Lines (one event object per line) or CSV with a header row;
item files: JSON Lines of item records (``models.catalog``)."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from models.catalog import InvalidItem, ItemRecord, validate_item
from models.datasets.base import EventDataset
from models.events import Interaction, InvalidEvent, validate_event

_NUMERIC_FIELDS = ("timestamp", "value")


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            record: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
            for name in _NUMERIC_FIELDS:
                if name in record:
                    # Left as text when it is not a number: the validator names the field.
                    with contextlib.suppress(ValueError):
                        record[name] = float(record[name])
            if isinstance(record.get("timestamp"), float):
                record["timestamp"] = int(record["timestamp"])
            yield record


def _jsonl_rows(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                yield InvalidEvent(f"not valid JSON: {exc}")


def iter_event_file(path: str | Path) -> Iterator[Interaction | InvalidEvent]:
    """Yield each line as a validated event or as the ``InvalidEvent`` explaining why not."""
    source = Path(path)
    rows: Iterable[Any] = _csv_rows(source) if source.suffix == ".csv" else _jsonl_rows(source)
    for row in rows:
        if isinstance(row, InvalidEvent):
            yield row
            continue
        try:
            yield validate_event(row)
        except InvalidEvent as exc:
            yield exc


def load_event_file(
    path: str | Path, on_invalid: Literal["raise", "skip"] = "raise", tie_order: str = "id"
) -> EventDataset:
    """Read a whole file into stream order (ties: ``EventDataset.sort``); invalid lines raise
    (default) or are skipped."""
    events: list[Interaction] = []
    for n, item in enumerate(iter_event_file(path), start=1):
        if isinstance(item, InvalidEvent):
            if on_invalid == "raise":
                raise InvalidEvent(f"{path}: event {n}: {item}")
            continue
        events.append(item)
    return EventDataset(name=Path(path).stem, events=events).sort(tie_order)


def write_event_file(events: Iterable[Interaction], path: str | Path) -> int:
    """Write events as JSON Lines; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event.to_json_dict(), separators=(",", ":")) + "\n")
            count += 1
    return count


def load_item_file(path: str | Path) -> list[ItemRecord]:
    """A JSON Lines file of item records, in file order; the first invalid line raises an
    ``InvalidItem`` naming its line (a catalog half published is worse than none)."""
    records: list[ItemRecord] = []
    for n, row in enumerate(_jsonl_rows(Path(path)), start=1):
        try:
            if isinstance(row, InvalidEvent):
                raise InvalidItem(str(row))
            records.append(validate_item(row))
        except InvalidItem as exc:
            raise InvalidItem(f"{path}: record {n}: {exc}") from None
    return records
