"""``streamrec evaluate``: the prequential evaluation (:mod:`models.online.evaluate_cli`),
counting events as the settings say (``STREAMREC_EVENT_WEIGHTS``,
``STREAMREC_NEGATIVE_RATING_BELOW``): the worker reads the same, so what is evaluated is what
is served. The learning code takes them as a parameter, since it imports nothing from here.
"""

from __future__ import annotations

import argparse

from models.online import evaluate_cli

add_arguments = evaluate_cli.add_arguments


def run(args: argparse.Namespace) -> int:
    return evaluate_cli.run(
        args, feedback=args.settings.feedback, params=args.settings.scoring_params
    )
