"""``streamrec produce``: replay a dataset (or generated events) into the events topic, or with
``--items`` publish its catalog to the compacted items topic.

Every event is keyed by ``user_id`` (one user's events stay ordered on one partition, and the
worker's history table relies on that partitioning) and its value is the contract JSON
(``models.events.encode_event``); every item record is keyed by ``item_id``
(``models.catalog``). ``--invalid N`` mixes in malformed events for demos and tests of the
dead-letter path; ``--retime`` moves timestamps to now so TTLs and decay behave as live.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from models.catalog import ItemRecord, encode_item_message
from models.events import Interaction, encode_event
from stream_app.kafka.admin import quiet_kafka_client_logs
from stream_app.kafka.clients import kafka_python_options
from stream_app.settings import Settings

#: kafka-python batching: wait up to 20 ms to fill 256 KiB batches, gzip them (stdlib zlib;
#: lz4/zstd would need extra packages). Ordering per key holds: idempotence is on by default.
PRODUCER_CONFIG: dict[str, object] = {
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "compression_type": "gzip",
    "acks": "all",
}


def encode_message(event: Interaction) -> tuple[bytes, bytes]:
    """``(key, value)`` of one event on the wire.

    >>> encode_message(Interaction("u1", "i2", "click", 1700000000000))
    (b'u1', b'{"user_id":"u1","item_id":"i2","event_type":"click","timestamp":1700000000000}')
    """
    return event.user_id.encode(), encode_event(event)


def retime(events: Sequence[Interaction], start_ms: int, span_ms: float) -> list[Interaction]:
    """Shift events to start at ``start_ms`` and scale their gaps to fit ``span_ms``.

    The order and the relative spacing are kept, so decay and sessions behave alike, only on a
    clock that is "now".

    >>> ev = [Interaction("u", "a", "view", 1_000_000_000_000),
    ...       Interaction("u", "b", "view", 1_000_000_100_000)]
    >>> [e.timestamp_ms for e in retime(ev, 1_700_000_000_000, 10_000)]
    [1700000000000, 1700000010000]
    """
    if not events:
        return []
    first = min(e.timestamp_ms for e in events)
    last = max(e.timestamp_ms for e in events)
    scale = span_ms / (last - first) if last > first else 0.0
    return [
        replace(e, timestamp_ms=int(start_ms + (e.timestamp_ms - first) * scale)) for e in events
    ]


#: (kind, payload) templates of malformed messages; ``{n}`` makes each one distinct.
_MALFORMED: tuple[tuple[str, bytes | None], ...] = (
    ("not json", b"this is not json {n}"),
    ("invalid utf-8", b"\xff\xfe{n}\x80"),
    ("empty value", b""),
    ("json array", b"[1, 2, {n}]"),
    ("missing user_id", b'{"item_id":"i{n}","event_type":"view","timestamp":1700000000000}'),
    ("wrong type", b'{"user_id":"u{n}","item_id":"i1","event_type":"view","timestamp":"soon"}'),
    ("bad event_type", b'{"user_id":"u{n}","item_id":"i1","event_type":"like","timestamp":1}'),
    ("seconds", b'{"user_id":"u{n}","item_id":"i1","event_type":"view","timestamp":1700000000}'),
    (
        "rating without value",
        b'{"user_id":"u{n}","item_id":"i1","event_type":"rating","timestamp":1700000000000}',
    ),
    ("huge id", None),  # built in malformed_messages: an id over MAX_ID_LENGTH
)


def malformed_messages(n: int) -> list[tuple[str, bytes, bytes]]:
    """``n`` malformed ``(kind, key, value)`` messages, cycling through every kind.

    >>> [kind for kind, _, _ in malformed_messages(3)]
    ['not json', 'invalid utf-8', 'empty value']
    """
    out: list[tuple[str, bytes, bytes]] = []
    for i in range(n):
        kind, template = _MALFORMED[i % len(_MALFORMED)]
        if template is None:
            value = json.dumps(
                {
                    "user_id": "u" * 5000,
                    "item_id": "i",
                    "event_type": "view",
                    "timestamp": 1700000000000 + i,
                }
            ).encode()
        else:
            value = template.replace(b"{n}", str(i).encode())
        out.append((kind, f"bad-{i}".encode(), value))
    return out


#: The largest fuzzed value: under the broker's default 1 MiB message limit with its envelope.
FUZZ_MAX_BYTES = 900_000


def _fuzz_value(rng: random.Random, i: int) -> bytes:
    """One fuzzed message value of a randomly chosen kind (see :func:`fuzzed_messages`)."""
    good = {
        "user_id": f"fz{i}",
        "item_id": "i1",
        "event_type": "view",
        "timestamp": 1_700_000_000_000,
    }
    field = rng.choice([*good, "value", "session_id", "context"])
    junk = rng.choice([None, True, -1, 2**70, 1.5, "", " ", "\x00", [], {}, [[1]], "é" * 300])
    kind = rng.randrange(9)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:  # UTF-8 cut inside a character
        raw = json.dumps({**good, "item_id": "€" * 20}, ensure_ascii=False).encode()
        return raw[: rng.randrange(10, len(raw) - 1)]
    if kind == 2:  # deep nesting
        depth = rng.randrange(1_000, 100_000)
        return b'{"user_id": "u", "context": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 3:  # a huge value (rarely: each one is most of a megabyte)
        size = FUZZ_MAX_BYTES if rng.random() < 0.02 else rng.randrange(300, 5_000)
        return json.dumps({**good, field: "x" * size}).encode()
    if kind == 4:  # non-finite or out-of-range numbers, as JSON cannot say them
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1", b"1e400"])
        return json.dumps({**good, "timestamp": 0}).encode().replace(b": 0}", b": " + token + b"}")
    if kind == 5:  # a wrong type (or an odd value) in one field
        return json.dumps({**good, field: junk}).encode()
    if kind == 6:  # duplicate keys: the last one is the one judged
        head = json.dumps(good)[:-1]
        return f"{head}, {json.dumps(field)}: {json.dumps(junk)}}}".encode()
    if kind == 7:  # NUL bytes inside the text
        return json.dumps({**good, field: f"a\x00{i}"}).encode()
    return json.dumps(rng.choice([junk, [good], good | {"extra": junk}])).encode()  # odd shapes


def fuzzed_messages(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``n`` seeded fuzzed ``(key, value)`` messages: random bytes, UTF-8 cut inside a
    character, deep nesting, huge values, NaN/Infinity, a wrong type in a field, duplicate
    keys, NUL bytes, odd shapes. Some are valid events (a NUL is a character, an extra field
    is allowed): whoever counts uses the worker's own validator as the oracle.

    >>> len(fuzzed_messages(50, seed=1)), fuzzed_messages(5, 1) == fuzzed_messages(5, 1)
    (50, True)
    """
    rng = random.Random(seed)
    return [(f"fuzz-{i}".encode(), _fuzz_value(rng, i)) for i in range(n)]


def interleave(
    good: Sequence[tuple[bytes, bytes]], bad: Sequence[tuple[bytes, bytes]], seed: int
) -> list[tuple[bytes, bytes]]:
    """Insert ``bad`` messages at random positions of ``good``, keeping each list's order.

    >>> interleave([(b"k", b"1"), (b"k", b"2")], [(b"x", b"bad")], seed=0)[1:] != []
    True
    >>> len(interleave([(b"k", b"1")] * 5, [(b"x", b"b")] * 3, seed=1))
    8
    """
    rng = random.Random(seed)
    slots = sorted(rng.randrange(len(good) + 1) for _ in bad)
    out: list[tuple[bytes, bytes]] = []
    b = 0
    for i, message in enumerate(good):
        while b < len(bad) and slots[b] == i:
            out.append(bad[b])
            b += 1
        out.append(message)
    out.extend(bad[b:])
    return out


def paced(count: int, rate: float) -> Iterator[int]:
    """Yield ``0..count-1``, sleeping so the i-th index comes no earlier than ``i / rate`` s."""
    start = time.perf_counter()
    for i in range(count):
        if rate > 0:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0.001:
                time.sleep(ahead)
        yield i


def load_events(args: argparse.Namespace) -> list[Interaction]:
    from models.datasets import load_dataset

    if args.generate is not None:
        dataset = load_dataset("synthetic", synthetic_events=args.generate, seed=args.seed)
    else:
        dataset = load_dataset(args.dataset, seed=args.seed)
    events = dataset.events
    if args.limit is not None:
        events = events[: args.limit]
    return events


def _ids(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def item_messages(
    records: Sequence[ItemRecord], hide: Sequence[str] = (), delete: Sequence[str] = ()
) -> list[tuple[bytes, bytes | None]]:
    """The catalog's messages: each record keyed by its id (those in ``hide`` marked hidden),
    then a tombstone for each id in ``delete``.

    >>> [(k, v is None) for k, v in item_messages([ItemRecord("a", "A")], delete=["b"])]
    [(b'a', False), (b'b', True)]
    >>> b'"hidden":true' in item_messages([ItemRecord("a", "A")], hide=["a"])[0][1]
    True
    """
    hidden = set(hide)
    shown = [replace(r, hidden=True) if r.item_id in hidden else r for r in records]
    return [encode_item_message(r.item_id, r) for r in shown] + [
        encode_item_message(item_id, None) for item_id in delete
    ]


def load_item_messages(args: argparse.Namespace) -> list[tuple[bytes, bytes | None]]:
    """``--items``: the catalog of ``--dataset``/``--generate`` (none: only ``--delete``'s
    tombstones), cut by ``--limit``, with ``--hide`` and ``--delete`` applied."""
    from models.datasets import load_catalog

    records: list[ItemRecord] = []
    if args.generate is not None:
        records = load_catalog("synthetic", synthetic_events=args.generate, seed=args.seed)
    elif args.dataset is not None:
        records = load_catalog(args.dataset, seed=args.seed)
    if args.limit is not None:
        records = records[: args.limit]
    return item_messages(records, args.hide, args.delete)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", help="movielens100k, synthetic, or a JSONL/CSV file in the event contract"
    )
    source.add_argument("--generate", type=int, metavar="N", help="generate N synthetic events")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events per second (default 0: as fast as possible)"
    )
    parser.add_argument("--limit", type=int, help="send at most this many dataset events")
    parser.add_argument(
        "--invalid", type=int, default=0, metavar="N", help="mix in N malformed messages"
    )
    parser.add_argument(
        "--fuzz", type=int, default=0, metavar="N", help="mix in N fuzzed messages (seeded)"
    )
    parser.add_argument(
        "--retime",
        action="store_true",
        help="shift timestamps to now, gaps scaled to the replay's duration (--span-s)",
    )
    parser.add_argument(
        "--span-s",
        type=float,
        help="with --retime: time span of the retimed events (default: N/rate, or 60 s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="synthetic data and --invalid mixing")
    parser.add_argument(
        "--topic", help="override STREAMREC_TOPIC_EVENTS (with --items: STREAMREC_TOPIC_ITEMS)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    items = parser.add_argument_group("catalog (--items)")
    items.add_argument(
        "--items",
        action="store_true",
        help="publish the dataset's item records (a JSONL file: item records) to the items topic",
    )
    items.add_argument(
        "--hide", type=_ids, default=[], metavar="ID,...", help="publish these items hidden"
    )
    items.add_argument(
        "--delete", type=_ids, default=[], metavar="ID,...", help="tombstones for these items"
    )


def _usage_error(args: argparse.Namespace) -> str | None:
    """Why this combination of options cannot run, or None."""
    has_source = args.dataset is not None or args.generate is not None
    if not args.items:
        if args.hide or args.delete:
            return "--hide and --delete need --items"
        return None if has_source else "one of --dataset or --generate is required"
    if args.invalid or args.fuzz or args.retime:
        return "--invalid, --fuzz and --retime are for events, not --items"
    if not has_source and (args.hide or not args.delete):
        return "--items needs --dataset or --generate (or only --delete)"
    return None


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    quiet_kafka_client_logs(settings)
    problem = _usage_error(args)
    if problem:
        print(f"streamrec produce: {problem}", file=sys.stderr)
        return 2
    from models.catalog import InvalidItem
    from models.datasets.movielens import DatasetUnavailable
    from models.events import InvalidEvent

    try:
        if args.items:
            return _send(args, args.topic or settings.topic_items, load_item_messages(args), "")
        events = load_events(args)
    except (InvalidEvent, InvalidItem, OSError, DatasetUnavailable) as exc:
        what = "items" if args.items else "events"
        print(f"streamrec produce: cannot load {what}: {exc}", file=sys.stderr)
        return 2
    if args.retime:
        span_s = args.span_s
        if span_s is None:
            span_s = len(events) / args.rate if args.rate > 0 else 60.0
        events = retime(events, int(time.time() * 1000), span_s * 1000)
    good = [encode_message(e) for e in events]
    bad = [(key, value) for _, key, value in malformed_messages(args.invalid)]
    bad += fuzzed_messages(args.fuzz, args.seed)
    messages = interleave(good, bad, args.seed) if bad else good
    note = f", {len(bad)} of them malformed or fuzzed" if bad else ""
    return _send(args, args.topic or settings.topic_events, messages, note)


def _send(
    args: argparse.Namespace,
    topic: str,
    messages: Sequence[tuple[bytes, bytes | None]],
    note: str,
) -> int:
    """Send ``messages`` (key, value; a None value is a tombstone) to ``topic`` at ``--rate``,
    flush, and print what was produced."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    from tqdm import tqdm

    settings: Settings = args.settings
    try:
        producer = KafkaProducer(**kafka_python_options(settings.kafka), **PRODUCER_CONFIG)
    except KafkaError as exc:
        print(
            f"streamrec produce: Kafka at {settings.kafka_bootstrap} unavailable: {exc!r} "
            "(is the stack up? `make stack-up`)",
            file=sys.stderr,
        )
        return 1
    failures: list[BaseException] = []
    start = time.perf_counter()
    try:
        with tqdm(
            total=len(messages), unit="msg", disable=args.no_progress, file=sys.stderr
        ) as bar:
            for i in paced(len(messages), args.rate):
                key, value = messages[i]
                producer.send(topic, key=key, value=value).add_errback(failures.append)
                if i % 1000 == 999:
                    bar.update(1000)
            bar.update(len(messages) % 1000)
            producer.flush()
    finally:
        producer.close()
    elapsed = time.perf_counter() - start
    if failures:
        print(f"streamrec produce: {len(failures)} sends failed, first: {failures[0]!r}")
        return 1
    print(_summary(messages, elapsed, args.items) + note)
    return 0


def _summary(messages: Sequence[tuple[bytes, bytes | None]], elapsed: float, items: bool) -> str:
    """The last line: events and their rate, or item records and tombstones.

    >>> _summary([(b"a", b"{}"), (b"b", None)], 0.5, items=True)
    'produced 1 item records and 1 tombstones in 0.50 s'
    """
    if not items:
        rate = len(messages) / max(elapsed, 1e-9)
        return f"produced {len(messages)} events in {elapsed:.2f} s ({rate:.0f} events/s)"
    tombstones = sum(value is None for _, value in messages)
    records = len(messages) - tombstones
    return f"produced {records} item records and {tombstones} tombstones in {elapsed:.2f} s"
