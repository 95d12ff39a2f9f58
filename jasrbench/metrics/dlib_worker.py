"""dlib's face descriptor in worker processes (:class:`jasrbench.metrics.recognizers.DlibRecognizer`).

dlib's ``compute_face_descriptor`` holds the GIL, so threads run one batch at a time; processes run
one batch per core. This module imports only numpy and dlib, so a spawned worker starts in well
under a second (no torch), and each worker loads the network once.
"""

from __future__ import annotations

import numpy as np

_NET = None


def load(model_path: str) -> None:
    """Pool initializer: this process's copy of the network."""
    global _NET
    import dlib

    _NET = dlib.face_recognition_model_v1(model_path)


def descriptors(net, chips: np.ndarray) -> np.ndarray:
    """Descriptors (N×128, float64) of N 150×150×3 uint8 chips from ``net``, in one dlib call."""
    return np.asarray(net.compute_face_descriptor(list(chips)), dtype=np.float64).reshape(len(chips), -1)


def embed_batch(chips: np.ndarray) -> np.ndarray:
    """:func:`descriptors` with this worker's network (the parent process calls it with its own)."""
    return descriptors(_NET, chips)
