"""Resolve a dataset name or path, as given on a command line, to an ``EventDataset``."""

from __future__ import annotations

from pathlib import Path

from models.datasets.base import EventDataset
from models.datasets.files import load_event_file
from models.datasets.movielens import load_movielens100k
from models.datasets.synthetic import SyntheticConfig, generate_synthetic

DATASET_NAMES = ("movielens100k", "synthetic")


def load_dataset(spec: str, *, synthetic_events: int | None = None, seed: int = 7) -> EventDataset:
    """``movielens100k``, ``synthetic`` (sized by ``synthetic_events``) or a file path."""
    if spec == "movielens100k":
        return load_movielens100k()
    if spec == "synthetic":
        config = SyntheticConfig(seed=seed)
        if synthetic_events is not None:
            config = config.resized(synthetic_events)
        return generate_synthetic(config)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {spec!r} is neither one of {', '.join(DATASET_NAMES)} nor an existing file"
        )
    return load_event_file(path)
