"""``streamrec models``: the model store's versions and the operator's hand on them.

    streamrec models list [--json]     versions, gate metrics, accepted/refused/pinned, serving
    streamrec models pin VERSION       serve VERSION whatever is newer (the quality gate skipped)
    streamrec models unpin             back to the newest version that passes the gate
    streamrec models rollback          refuse the serving version; fall back to the last accepted

The workers obey at their next poll of the store (``STREAMREC_MODEL_POLL_S``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.session.artifacts import ArtifactRejected, manifest_metrics, read_manifest
from models.session.store import (
    Ledger,
    StoreError,
    list_versions,
    pinned_to,
    read_ledger,
    rolled_back,
    update_ledger,
)
from stream_app.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=None, help="model store (default: settings)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="versions, their gate metrics and status")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    pin = sub.add_parser("pin", help="serve this version whatever is newer")
    pin.add_argument("version")
    sub.add_parser("unpin", help="drop the pin")
    sub.add_parser("rollback", help="refuse the serving version, fall back to the last accepted")


def status(version: str, ledger: Ledger) -> str:
    """A version's status in words: pinned, refused (why), accepted, or new (never offered).

    >>> from models.session.store import Verdict
    >>> status("v2", Ledger(refused={"v2": Verdict("quality gate: worse", 1)}))
    'refused: quality gate: worse'
    """
    if ledger.pinned == version:
        return "pinned"
    if version in ledger.refused:
        return f"refused: {ledger.refused[version].reason}"
    if version in ledger.accepted:
        return "accepted"
    return "new"


def rows(store: Path) -> list[dict[str, Any]]:
    """One row per version, oldest first (manifests read and hash-checked, no model loaded)."""
    ledger = read_ledger(store)
    out = []
    for version in list_versions(store):
        row: dict[str, Any] = {"version": version, "status": status(version, ledger)}
        try:
            own, baselines = manifest_metrics(read_manifest(store / version))
            row["recall@20"], row["mrr@20"] = own.get("recall@20"), own.get("mrr@20")
            row["best_baseline_recall@20"] = max(
                (b.get("recall@20", 0.0) for b in baselines.values()), default=None
            )
        except ArtifactRejected as exc:
            row["status"] = f"{row['status']} (unreadable: {exc.reason})"
        row["serving"] = ledger.serving == version
        out.append(row)
    return out


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _list(store: Path, as_json: bool) -> int:
    table = rows(store)
    if as_json:
        print(json.dumps({"store": str(store), "versions": table}, indent=2))
        return 0
    if not table:
        print(f"no versions in {store}")
        return 0
    print(f"  {'version':<26} {'recall@20':>9} {'mrr@20':>7} {'best base':>9}  status")
    for row in table:
        mark = "*" if row["serving"] else " "
        print(
            f"{mark} {row['version']:<26} {_number(row.get('recall@20')):>9} "
            f"{_number(row.get('mrr@20')):>7} {_number(row.get('best_baseline_recall@20')):>9}"
            f"  {row['status']}"
        )
    print("* serving (the last version a worker swapped in); best base: best baseline recall@20")
    return 0


def run(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    store: Path = args.store or settings.model_store
    versions = list_versions(store)
    try:
        if args.action == "list":
            return _list(store, args.json)
        if args.action == "pin":
            update_ledger(store, lambda ledger: pinned_to(ledger, versions, args.version))
            print(f"pinned {args.version}: the workers swap it in at their next poll")
        elif args.action == "unpin":
            update_ledger(store, lambda ledger: replace(ledger, pinned=None))
            print("unpinned: the workers follow the newest version that passes the gate")
        else:
            moved: list[str] = []

            def roll(ledger: Ledger) -> Ledger:
                new, out, back = rolled_back(ledger, versions, int(time.time() * 1000))
                moved.extend([out, back])
                return new

            update_ledger(store, roll)
            print(f"rolled back {moved[0]} (refused): the workers fall back to {moved[1]}")
    except StoreError as exc:
        print(f"streamrec models {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
