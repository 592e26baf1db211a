"""The stream model: the online model in the shape the partitioned worker runs it.

User-side pair deltas and item rows (:mod:`.deltas`), the published lists as arrays
(:mod:`.arrays`), candidates, features and reasons (:mod:`.scoring`), the River ranker of each
partition (:mod:`.ranker`), and the scorer the worker and the evaluator share (:mod:`.model`).
"""

from models.online.stream.model import StreamModel, StreamScorer, event_seed
from models.online.stream.ranker import RANKER_NAME, StreamRanker
from models.online.stream.scoring import (
    FEATURES,
    FIXED_BLEND,
    SESSION_REASON,
    TRENDING_REASON,
    Recommendation,
    ScoringParams,
)

__all__ = [
    "FEATURES",
    "FIXED_BLEND",
    "RANKER_NAME",
    "SESSION_REASON",
    "TRENDING_REASON",
    "Recommendation",
    "ScoringParams",
    "StreamModel",
    "StreamRanker",
    "StreamScorer",
    "event_seed",
]
