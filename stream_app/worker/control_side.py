"""The control side's steps for one batch of the control topic: parse each command (what breaks
the contract goes to the DLQ with its reason), skip the ones applied before, wait until the
worker group has committed every event of the user produced before the command, then forget
her: a tombstone for her history row, her Redis keys gone, the command counted once. Why the
wait and what is not forgotten: docs/stream.md, "Forgetting a user"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from models.online.stream.partitions import key_partition
from stream_app.cache.base import CacheUnavailable, RecCache
from stream_app.cache.keys import CacheKeys
from stream_app.kafka.control import (
    ForgetUser,
    InvalidControl,
    OffsetsUnavailable,
    encode_forget,
    parse_control,
)
from stream_app.settings import Settings
from stream_app.worker.dead_letters import send_once
from stream_app.worker.records import DeadLetter, letter_for
from stream_app.worker.topology import Topology

log = logging.getLogger(__name__)

#: Starts the reason of a control dead letter, so the journal tells it from a rejected event.
REASON_PREFIX = "control: "
#: How often the wait for the group's commits polls Kafka (Faust commits every 2.8 s).
POLL_S = 0.5
#: The longest pause between two tries of Redis or Kafka while they fail.
MAX_BACKOFF_S = 30.0

T = TypeVar("T")


class Offsets(Protocol):
    """Where the events topic's partitions end and what the group committed
    (``stream_app.kafka.control.EventOffsets``); both raise ``OffsetsUnavailable``."""

    def end_offsets(self, partitions: list[int]) -> dict[int, int]: ...

    def committed(self, partitions: list[int]) -> dict[int, int | None]: ...


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command with where it was (``offset`` -1: unknown, a local channel)."""

    forget: ForgetUser
    partition: int
    offset: int
    event: Any


def sort_control(events: Sequence[Any], partitions: int) -> tuple[list[Command], list[DeadLetter]]:
    """The batch's valid commands in order, and the dead letters; never raises on bad input.

    A command on another partition than her events' (a producer that chose the partition
    itself) would reach a worker that may not hold her history: refused.
    """
    commands: list[Command] = []
    dead: list[DeadLetter] = []
    for event in events:
        message = event.message
        try:
            key, value = message.key, event.value
            if not isinstance(key, bytes | None) or not isinstance(value, bytes | None):
                raise InvalidControl("key and value must be bytes")
            forget = parse_control(key, value)
            partition = int(message.partition or 0)
            home = key_partition(forget.user_id, partitions)
            if message.offset is not None and message.offset >= 0 and partition != home:
                raise InvalidControl(
                    f"on partition {partition}, but the user's events are on {home}"
                )
        except InvalidControl as exc:
            dead.append(letter_for(event, f"{REASON_PREFIX}{exc}"))
            continue
        offset = message.offset if isinstance(message.offset, int) else -1
        commands.append(Command(forget, partition, offset, event))
    return commands, dead


def fences(
    commands: Sequence[Command], ends: dict[int, int]
) -> tuple[list[tuple[Command, int]], list[DeadLetter]]:
    """Each command with the events offset it waits for (its own, else the partition's end);
    a command whose offset is past the partition's end could never be met: a dead letter.

    >>> c = Command(ForgetUser("u", None), 0, 3, None)
    >>> [(cmd.forget.user_id, at) for cmd, at in fences([c], {0: 17})[0]]
    [('u', 17)]
    """
    kept: list[tuple[Command, int]] = []
    dead: list[DeadLetter] = []
    for command in commands:
        end = ends.get(command.partition, 0)
        wanted = command.forget.events_offset
        if wanted is not None and wanted > end:
            reason = f"events_offset {wanted} is past the end ({end}) of the user's partition"
            dead.append(letter_for(command.event, f"{REASON_PREFIX}{reason}"))
            continue
        kept.append((command, end if wanted is None else wanted))
    return kept, dead


def committed_past(fenced: Sequence[tuple[int, int]], committed: dict[int, int | None]) -> bool:
    """Whether the group committed, on every ``(partition, offset)``, past the offset: every
    event below it was processed (a batch is acknowledged after it ran).

    >>> committed_past([(0, 5), (1, 0)], {0: 5, 1: None}), committed_past([(0, 5)], {0: 4})
    (True, False)
    """
    return all(at == 0 or (committed.get(p) or 0) >= at for p, at in fenced)


class ControlSide:
    """One batch of the control topic (:meth:`process`)."""

    def __init__(
        self,
        topology: Topology,
        settings: Settings,
        store: RecCache,
        keys: CacheKeys,
        offsets: Offsets,
        flush: Callable[[], Awaitable[None]],
        wait_s: float = 10.0,
    ) -> None:
        self.topology = topology
        self.settings = settings
        self.store = store
        self.keys = keys
        self.offsets = offsets
        #: waits until the table's changelog writes are acknowledged by the broker
        self.flush = flush
        #: longest wait, in one batch, for the group to commit past the commands' fences
        self.wait_s = wait_s

    async def process(self, events: Sequence[Any]) -> list[str]:
        """Returns the users forgotten by this batch, in order."""
        commands, dead = sort_control(events, self.settings.event_partitions)
        marks_name = self.settings.topic_control
        done = await _retrying(lambda: self.store.read_hwm(marks_name), "control marks")
        commands = [c for c in commands if c.offset < 0 or c.offset > done.get(c.partition, -1)]
        fenced: list[tuple[Command, int]] = []
        if commands:
            parts = sorted({c.partition for c in commands})
            ends = await _retrying(lambda: self.offsets.end_offsets(parts), "events end offsets")
            fenced, late = fences(commands, ends)
            dead.extend(late)
        for letter in dead:
            log.warning("control message to the DLQ: %s", letter.reason)
        await send_once(self.topology.dlq, self.store, self.keys, dead, "control_dlq")
        if not fenced:
            return []
        ready, later = await self.wait_committed(fenced)
        await self.defer(later)
        if not ready:
            return []
        users = [c.forget.user_id for c, _ in ready]
        self.forget_rows(users)
        await self.flush()  # the tombstones are durable before the marks say "applied"
        positions = [(c.partition, c.offset) for c, _ in ready]
        await _retrying(
            lambda: self.store.forget_users(users, marks_name, positions), "forgetting in Redis"
        )
        log.info("forgot %d user(s): %s", len(users), ", ".join(users)[:500])
        return users

    async def wait_committed(
        self, fenced: Sequence[tuple[Command, int]]
    ) -> tuple[list[tuple[Command, int]], list[tuple[Command, int]]]:
        """(commands whose fence the group committed past, the others) after at most
        ``self.wait_s``. Past its fence, no event of hers produced before the command can
        still be processed, and bring her history back, after it. The wait is bounded: a
        rebalance waits for this batch to finish while it holds the events back."""
        parts = sorted({c.partition for c, _ in fenced})
        deadline = time.monotonic() + self.wait_s
        while True:
            committed = await _retrying(lambda: self.offsets.committed(parts), "committed offsets")
            ready = [(c, at) for c, at in fenced if committed_past([(c.partition, at)], committed)]
            if len(ready) == len(fenced) or time.monotonic() >= deadline:
                later = [(c, at) for c, at in fenced if (c, at) not in ready]
                return ready, later
            await asyncio.sleep(POLL_S)

    async def defer(self, later: Sequence[tuple[Command, int]]) -> None:
        """Send the commands whose events are not committed yet to the back of their control
        partition, each with its fence made explicit, and wait for the broker: this batch can
        then be acknowledged, and the copy is applied once the worker has caught up."""
        sends = []
        for command, at in later:
            user = command.forget.user_id
            log.info(
                "forget of %r waits for events partition %d to pass offset %d: requeued",
                user,
                command.partition,
                at,
            )
            value = encode_forget(ForgetUser(user, at))
            sends.append(
                await self.topology.control.send(
                    key=user.encode(), value=value, partition=command.partition
                )
            )
        futures = [f for f in sends if isinstance(f, asyncio.Future)]
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), MAX_BACKOFF_S * 2)

    def forget_rows(self, users: Sequence[str]) -> None:
        """Delete each user's history row. ``del`` sends the changelog tombstone before it
        touches the local store (faust ``Table.on_key_del``), so a user the table does not
        hold (unknown, or forgotten before) still gets one: the KeyError after it is fine."""
        table = self.topology.history
        for user in users:
            with contextlib.suppress(KeyError):
                del table[user.encode()]


async def _retrying(call: Callable[[], T], what: str) -> T:
    """``call`` in a thread until it does not raise ``CacheUnavailable`` or
    ``OffsetsUnavailable``: a command is never dropped because Redis or Kafka blinked (the
    control topic is quiet, so waiting here holds up nothing but later commands)."""
    pause = 0.5
    while True:
        try:
            return await asyncio.to_thread(call)
        except (CacheUnavailable, OffsetsUnavailable) as exc:
            log.warning("control side: %s unavailable, retrying in %.1f s: %s", what, pause, exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)
