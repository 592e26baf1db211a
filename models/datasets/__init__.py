"""Event datasets: the synthetic world, the e-commerce log, MovieLens-100K (all ratings, or the
positive ones), and files in the event contract.

``load_dataset(spec)`` is the one entry point the evaluator, the trainer and the producer share.
"""

from models.datasets.base import EventDataset
from models.datasets.ecommerce import EcommerceConfig, EcommerceWorld, generate_ecommerce
from models.datasets.files import load_event_file, write_event_file
from models.datasets.movielens import load_movielens100k, load_movielens100k_positive
from models.datasets.registry import DATASET_NAMES, load_catalog, load_dataset
from models.datasets.synthetic import (
    SyntheticConfig,
    SyntheticWorld,
    generate_synthetic,
    synthetic_catalog,
)

__all__ = [
    "DATASET_NAMES",
    "EcommerceConfig",
    "EcommerceWorld",
    "EventDataset",
    "SyntheticConfig",
    "SyntheticWorld",
    "generate_ecommerce",
    "generate_synthetic",
    "load_catalog",
    "load_dataset",
    "load_event_file",
    "load_movielens100k",
    "load_movielens100k_positive",
    "synthetic_catalog",
    "write_event_file",
]
