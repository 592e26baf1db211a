"""Shared evaluation rules: one place that says how ranks, ties and cut-offs are computed."""

from models.evaluation.metrics import RankAccumulator, rank_in_list, rank_in_scores

__all__ = ["RankAccumulator", "rank_in_list", "rank_in_scores"]
