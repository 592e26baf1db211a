"""Content similarity from catalog attributes, so a brand-new item has candidates at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.online.vocab import grown

#: Catalog fields read as categorical attributes (movielens: genres, synthetic: category).
ATTRIBUTE_FIELDS = ("genres", "category", "categories", "brand", "year")


def item_attributes(record: Mapping[str, Any]) -> list[str]:
    """``field=value`` tokens of a catalog record; lists give one token per element.

    >>> item_attributes({"title": "Toy Story", "genres": ["Animation", "Comedy"], "year": "1995"})
    ['genres=Animation', 'genres=Comedy', 'year=1995']
    """
    tokens: list[str] = []
    for name in ATTRIBUTE_FIELDS:
        value = record.get(name)
        if value is None or value == "":
            continue
        values = value if isinstance(value, list | tuple) else [value]
        tokens.extend(f"{name}={v}" for v in values)
    return tokens


class ContentSimilarity:
    """Cosine between a user's attribute profile and each item's attribute set.

    Examples
    --------
    >>> c = ContentSimilarity()
    >>> c.set_item(0, ["genres=Drama"]); c.set_item(1, ["genres=Drama", "genres=War"])
    >>> c.set_item(2, ["genres=Comedy"])
    >>> c.scores(np.array([0]), np.array([1.0]), 3).round(3).tolist()
    [1.0, 0.707, 0.0]
    """

    def __init__(self, max_attributes: int = 256) -> None:
        self.max_attributes = max_attributes
        self.attributes: dict[str, int] = {}
        # Exactly as wide as the attributes in use, and C-contiguous: the per-request product
        # over all items is then faster than on a strided slice of a max-width matrix.
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def set_item(self, item: int, tokens: list[str]) -> None:
        self._matrix = grown(self._matrix, item + 1)
        cols = []
        for token in tokens:
            col = self.attributes.get(token)
            if col is None:
                if len(self.attributes) >= self.max_attributes:
                    continue  # the bound: rare late attributes are ignored
                col = self.attributes[token] = len(self.attributes)
            cols.append(col)
        width = len(self.attributes)
        if width > self._matrix.shape[1]:
            wider = np.zeros((self._matrix.shape[0], width), dtype=np.float32)
            wider[:, : self._matrix.shape[1]] = self._matrix
            self._matrix = wider
        row = np.zeros(self._matrix.shape[1], dtype=np.float32)
        row[cols] = 1.0
        norm = float(np.linalg.norm(row))
        self._matrix[item] = row / norm if norm > 0 else row

    def scores(self, items: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
        self._matrix = grown(self._matrix, n)
        if items.shape[0] == 0:
            return np.zeros(n)
        profile = weights.astype(np.float32) @ self._matrix[items]
        norm = float(np.linalg.norm(profile))
        if norm == 0:
            return np.zeros(n)
        return (self._matrix[:n] @ (profile / norm)).astype(np.float64)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"attributes": self.attributes}, {"matrix": self._matrix.copy()}

    def load_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.attributes = dict(meta["attributes"])
        self._matrix = np.array(arrays["matrix"], dtype=np.float32)
