"""Where catalogs come from: MovieLens' item file, the synthetic generator's clusters, JSON
Lines files of records, all through ``load_catalog`` as ``streamrec produce --items`` calls it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.catalog import InvalidItem, ItemRecord, encode_item, validate_item
from models.datasets import SyntheticConfig, generate_synthetic, load_catalog, synthetic_catalog
from models.datasets.movielens import read_movielens_items

#: The head of RecBole's ml-100k.item with the rows that need care, as the wheel ships them.
ML_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "50\tStar Wars\t1977\tAction Adventure Romance Sci-Fi War\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "1373\tGood Morning\t1971\tunknown\n"
)


def test_movielens_items_get_title_with_year_genres_and_year(tmp_path: Path):
    path = tmp_path / "ml-100k.item"
    path.write_text(ML_ITEM, encoding="latin-1")
    records = read_movielens_items(path)
    assert [r.item_id for r in records] == ["1", "50", "267", "1373"]
    assert records[1] == ItemRecord(
        "50",
        "Star Wars (1977)",
        ("Action", "Adventure", "Romance", "Sci-Fi", "War"),
        {"year": 1977},
    )
    assert records[0].categories == ("Animation", "Children's", "Comedy")
    # no year: the title as given and no year attribute; "unknown" genre: no category
    assert records[2] == ItemRecord("267", "unkonwn")
    assert records[3] == ItemRecord("1373", "Good Morning (1971)", (), {"year": 1971})
    for record in records:  # what the producer publishes passes the worker's validator
        assert validate_item(json.loads(encode_item(record))) == record


def test_synthetic_categories_are_the_planted_clusters_and_the_stream_is_unchanged():
    cfg = SyntheticConfig(n_users=30, n_items=60, n_clusters=6, n_events=800, seed=3)
    dataset = generate_synthetic(cfg)
    catalog = synthetic_catalog(cfg)
    assert catalog == dataset.catalog and len(catalog) == cfg.n_items
    world = dataset.planted
    assert all(r.categories == (f"c{world.item_cluster[r.item_id]}",) for r in catalog)
    assert len({r.categories for r in catalog}) == cfg.n_clusters
    # the catalog draws nothing: the events are those of the same config before it existed
    assert dataset.events == generate_synthetic(cfg).events
    assert dataset.items == {r.item_id: {"category": r.categories[0]} for r in catalog}


def test_load_catalog_resolves_synthetic_sizes_and_jsonl_files(tmp_path: Path):
    assert len(load_catalog("synthetic", synthetic_events=400_000)) == 2_000
    assert load_catalog("synthetic", seed=7) == generate_synthetic().catalog
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"item_id": "a", "title": "A", "hidden": true}\n\n{"item_id": 2, "title": "B"}\n'
    )
    assert load_catalog(str(path)) == [ItemRecord("a", "A", hidden=True), ItemRecord("2", "B")]
    path.write_text('{"item_id": "a", "title": "A"}\n{"item_id": "b"}\n')
    with pytest.raises(InvalidItem, match="record 2: title must be"):
        load_catalog(str(path))
    with pytest.raises(FileNotFoundError):
        load_catalog(str(tmp_path / "missing.jsonl"))
