"""Lazy, once-per-process TensorFlow set-up: imported only by code that really runs the network.

Why lazy: the stream worker imports ``models.session`` for data handling and must not pay
TensorFlow's ~5 s import and ~0.5 GB unless it actually loads a model. Why threads are set here:
on a 2-core box TensorFlow's default pools (one thread per core for each of intra- and inter-op)
oversubscribe the CPU when the worker's event loop runs beside them; one inter-op thread and
``threads`` intra-op threads keep a batched prediction from starving the stream.
"""

from __future__ import annotations

import os
from typing import Any

_state = {"configured": False}  # process-wide: TF's thread pools can be sized once per process


def tensorflow(threads: int | None = None) -> Any:
    """Import and return ``tensorflow`` (Keras 3 on the TF backend), sizing its thread pools once.

    ``threads`` defaults to ``STREAMREC_TF_THREADS`` or the number of CPUs (at most 4).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    if not _state["configured"]:
        _state["configured"] = True
        wanted = threads or int(os.environ.get("STREAMREC_TF_THREADS", "0") or 0)
        wanted = wanted or min(os.cpu_count() or 1, 4)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(wanted)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # the runtime was already initialised by the caller: keep its pools
    return tf


def keras() -> Any:
    """Import ``keras`` after :func:`tensorflow` has configured the backend."""
    tensorflow()
    import keras

    return keras
