"""Does the online model recover the synthetic world's planted structure?

After learning the whole synthetic stream, for every item with statistics:
- cluster: share of its top-10 co-occurrence neighbours in its planted cluster (chance: about
  1 / n_clusters);
- successor: share of items whose planted chain successor is the top-1 learned transition, and
  share where it is among the top-10 co-occurrence neighbours (chance: about 1 / n_items and
  10 / n_items).
- taste: for users with 20+ events, share of the model's top-10 recommendations in the user's
  two planted favourite clusters versus the share of items in them.

    python bench/online_planted.py --out bench/results/online_planted.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from results_file import write_results

from models.datasets import load_dataset
from models.online.recommender import OnlineRecommender


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=None, help="synthetic stream size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/online_planted.json"))
    args = parser.parse_args()
    ds = load_dataset("synthetic", synthetic_events=args.events, seed=args.seed)
    world = ds.planted
    model = OnlineRecommender(catalog=ds.items, seed=args.seed)
    for event in ds.events:
        model.learn_one(event)
    n_clusters = len(set(world.item_cluster.values()))
    in_cluster = total = succ_top1 = succ_top10 = items = 0
    for item in model.vocab.items:
        neighbors = [n for n, _ in model.similarity.neighbors(item, 10)]
        if not neighbors:
            continue
        items += 1
        in_cluster += sum(world.item_cluster[n] == world.item_cluster[item] for n in neighbors)
        total += len(neighbors)
        succ_top10 += world.successor[item] in neighbors
        probs = model.transitions.probabilities(model.vocab.get(item), len(model.vocab))
        if probs.max() > 0:
            succ_top1 += model.vocab.items[int(np.argmax(probs))] == world.successor[item]
    taste_share = []
    cluster_size = np.bincount(list(world.item_cluster.values()), minlength=n_clusters)
    chance_share = []
    for user, state in model.history.users.items():
        if state.n_events < 20:
            continue
        favourites = set(np.argsort(-world.user_taste[user])[:2].tolist())
        recs = model.rank(user, 10)
        taste_share.append(np.mean([world.item_cluster[i] in favourites for i in recs]))
        chance_share.append(cluster_size[list(favourites)].sum() / cluster_size.sum())
    output = {
        "dataset": "synthetic",
        "events": len(ds.events),
        "n_items": ds.n_items,
        "n_clusters": n_clusters,
        "cluster": {
            "items_checked": items,
            "neighbour_same_cluster_share": in_cluster / max(total, 1),
            "chance": 1.0 / n_clusters,
        },
        "successor": {
            "top1_transition_is_planted_successor": succ_top1 / max(items, 1),
            "planted_successor_in_top10_neighbours": succ_top10 / max(items, 1),
            "chance_top1": 1.0 / ds.n_items,
            "chance_top10": 10.0 / ds.n_items,
        },
        "taste": {
            "users_checked": len(taste_share),
            "top10_share_in_two_favourite_clusters": float(np.mean(taste_share)),
            "chance": float(np.mean(chance_share)),
        },
    }
    write_results(args.out, output, echo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
