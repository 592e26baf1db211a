"""Resolve a dataset name or path, as given on a command line, to an ``EventDataset``."""

from __future__ import annotations

from pathlib import Path

from models.catalog import ItemRecord
from models.datasets.base import EventDataset
from models.datasets.ecommerce import EcommerceConfig, generate_ecommerce
from models.datasets.files import load_event_file, load_item_file
from models.datasets.movielens import (
    load_movielens100k,
    load_movielens100k_positive,
    load_movielens_catalog,
)
from models.datasets.synthetic import SyntheticConfig, generate_synthetic, synthetic_catalog

DATASET_NAMES = ("movielens100k", "movielens100k-positive", "synthetic", "ecommerce")


def _synthetic_config(synthetic_events: int | None, seed: int) -> SyntheticConfig:
    config = SyntheticConfig(seed=seed)
    return config if synthetic_events is None else config.resized(synthetic_events)


def _existing(spec: str) -> Path:
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {spec!r} is neither one of {', '.join(DATASET_NAMES)} nor an existing file"
        )
    return path


def _ecommerce_config(synthetic_events: int | None) -> EcommerceConfig:
    """The e-commerce stream's own seed, whatever ``--seed`` says: a held-out stream is one
    stream, the same in every table."""
    config = EcommerceConfig()
    return config if synthetic_events is None else config.resized(synthetic_events)


def load_dataset(
    spec: str, *, synthetic_events: int | None = None, seed: int = 7, tie_order: str = "id"
) -> EventDataset:
    """``movielens100k``, ``movielens100k-positive`` (ratings >= 4), ``synthetic``,
    ``ecommerce`` (both sized by ``synthetic_events``) or a file path; ``tie_order`` orders
    same-timestamp events of the files (the generators make no ties)."""
    if spec == "movielens100k":
        return load_movielens100k(tie_order=tie_order)
    if spec == "movielens100k-positive":
        return load_movielens100k_positive()
    if spec == "synthetic":
        return generate_synthetic(_synthetic_config(synthetic_events, seed))
    if spec == "ecommerce":
        return generate_ecommerce(_ecommerce_config(synthetic_events))
    return load_event_file(_existing(spec), tie_order=tie_order)


def load_catalog(
    spec: str, *, synthetic_events: int | None = None, seed: int = 7
) -> list[ItemRecord]:
    """The item records of ``load_dataset(spec, ...)`` (``EventDataset.catalog``), without
    loading its events; a file path is a JSON Lines file of item records."""
    if spec in ("movielens100k", "movielens100k-positive"):
        return load_movielens_catalog()
    if spec == "synthetic":
        return synthetic_catalog(_synthetic_config(synthetic_events, seed))
    if spec == "ecommerce":
        return generate_ecommerce(_ecommerce_config(synthetic_events)).catalog
    return load_item_file(_existing(spec))
