"""The session model: sessions and splits, baselines, the Keras GRU, artifacts and serving.

Importing this package is cheap: TensorFlow is imported only when a network is built, trained or
loaded (see ``_tf``), so the stream worker can use the data helpers without paying for it.

The worker's API::

    path = newest_version(store)                 # Path | None
    model = load_session_model(path)             # SessionModel, or raises ArtifactRejected
    model.recommend(prefixes, k, exclude=None)   # [[(item_id, score), ...], ...]
    model.manifest                               # version, metrics, data range, hashes...
"""

from models.session.artifacts import (
    ArtifactRejected,
    list_versions,
    load_session_model,
    manifest_metrics,
    newest_version,
    read_manifest,
    save_artifact,
    version_in_store,
)
from models.session.baselines import ItemKNN, Markov, Popularity, SessionPopularity
from models.session.data import (
    EvalCase,
    Session,
    Split,
    Vocabulary,
    leave_one_out,
    session_protocol,
    sessionize,
    time_split,
)
from models.session.evaluation import evaluate
from models.session.serving import SessionModel

__all__ = [
    "ArtifactRejected",
    "EvalCase",
    "ItemKNN",
    "Markov",
    "Popularity",
    "Session",
    "SessionModel",
    "SessionPopularity",
    "Split",
    "Vocabulary",
    "evaluate",
    "leave_one_out",
    "list_versions",
    "load_session_model",
    "manifest_metrics",
    "newest_version",
    "read_manifest",
    "save_artifact",
    "session_protocol",
    "sessionize",
    "time_split",
    "version_in_store",
]
