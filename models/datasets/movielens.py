"""MovieLens-100K, obtained through PyPI: the ``recbole==1.2.1`` wheel ships the dataset files.

We ``pip download --no-deps`` the wheel into a cache and read three files out of the zip; recbole
itself is never installed or imported. The files are checked against known SHA-256 digests so a
changed or truncated download is refused rather than silently evaluated on.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from models.catalog import ItemRecord
from models.datasets.base import EventDataset
from models.events import Interaction

RECBOLE_REQUIREMENT = "recbole==1.2.1"
_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
FILE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


class DatasetUnavailable(RuntimeError):
    """The dataset could not be fetched or failed its integrity check."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamrec" / "datasets"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_ok(target: Path) -> bool:
    return all(
        (target / name).is_file() and _sha256(target / name) == digest
        for name, digest in FILE_SHA256.items()
    )


def fetch_movielens100k(cache_dir: Path | None = None) -> Path:
    """Return a directory holding the verified ml-100k files, downloading the wheel if needed."""
    target = (cache_dir or default_cache_dir()) / "ml-100k"
    if _cached_ok(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            RECBOLE_REQUIREMENT,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise DatasetUnavailable(
                f"could not download {RECBOLE_REQUIREMENT} from PyPI: {done.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in FILE_SHA256:
                (target / name).write_bytes(wheel.read(_MEMBER_DIR + name))
    if not _cached_ok(target):
        raise DatasetUnavailable(f"ml-100k files in {target} do not match their SHA-256 digests")
    return target


def _read_tsv(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="latin-1").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def load_movielens100k(cache_dir: Path | None = None, tie_order: str = "id") -> EventDataset:
    """All 100,000 ratings as ``rating`` events (value 1-5), in timestamp/user/item order
    (``tie_order="file"``: same-second ratings in the file's order, as RecBole reads them).

    Timestamps are converted from seconds to epoch milliseconds. The catalog carries title,
    release year and genres per movie.
    """
    folder = fetch_movielens100k(cache_dir)
    events = [
        Interaction(
            user_id=u,
            item_id=i,
            event_type="rating",
            timestamp_ms=int(float(ts)) * 1000,
            value=float(r),
        )
        for u, i, r, ts in _read_tsv(folder / "ml-100k.inter")
    ]
    items: dict[str, dict[str, Any]] = {}
    for row in _read_tsv(folder / "ml-100k.item"):
        row += [""] * (4 - len(row))
        item_id, title, year, genres = row[:4]
        items[item_id] = {"title": title, "year": year, "genres": genres.split()}
    catalog = read_movielens_items(folder / "ml-100k.item")
    return EventDataset(name="movielens100k", events=events, items=items, catalog=catalog).sort(
        tie_order
    )


#: The lowest rating the positive-only stream keeps: "liked it" (4 and 5 stars).
POSITIVE_RATING = 4.0


def load_movielens100k_positive(cache_dir: Path | None = None) -> EventDataset:
    """MovieLens-100K's ratings of 4 and 5 stars only: the implicit-feedback form of the
    stream (55,375 events), a held-out stream for the benchmarks (nothing was tuned on it).

    The events are :func:`load_movielens100k`'s, kept in the same order, with the catalog.
    """
    full = load_movielens100k(cache_dir)
    liked = [e for e in full.events if e.value is not None and e.value >= POSITIVE_RATING]
    return EventDataset("movielens100k-positive", liked, full.items, catalog=full.catalog)


#: The genre MovieLens gives a film it has no genre for: no category, not a shared one.
UNKNOWN_GENRE = "unknown"


def read_movielens_items(path: Path) -> list[ItemRecord]:
    """The catalog of an ``ml-100k.item`` file: one record per film, in file order.

    The file (RecBole's atomic form of ``u.item``) has the title without its year, the year,
    and the genres (``u.item``'s 19 flag columns as names). The title gets the year back as
    MovieLens writes it, "Star Wars (1977)"; the year is also an attribute, when it is one.
    """
    records = []
    for row in _read_tsv(path):
        row += [""] * (4 - len(row))
        item_id, name, year, genres = (cell.strip() for cell in row[:4])
        known_year = year.isdigit() and len(year) == 4
        records.append(
            ItemRecord(
                item_id=item_id,
                title=f"{name} ({year})" if known_year else name or item_id,
                categories=tuple(g for g in dict.fromkeys(genres.split()) if g != UNKNOWN_GENRE),
                attributes={"year": int(year)} if known_year else {},
            )
        )
    return records


def load_movielens_catalog(cache_dir: Path | None = None) -> list[ItemRecord]:
    """Only the catalog (:func:`read_movielens_items`), without reading the ratings."""
    return read_movielens_items(fetch_movielens100k(cache_dir) / "ml-100k.item")
