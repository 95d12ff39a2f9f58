"""Real faces for the metric tests (helpers in ``metricfixtures.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from metricfixtures import Faces, VerifyFaces, common_test_files, load_faces, load_verify_faces


@pytest.fixture(scope="session")
def common_faces(w300_root) -> Faces:
    """64 real common-test faces spread over LFPW and HELEN (every ~9th face)."""
    files = common_test_files(w300_root)
    pick = np.linspace(0, len(files) - 1, 64).round().astype(int)
    return load_faces([files[i] for i in pick])


@pytest.fixture(scope="session")
def verify_faces(verify_root) -> VerifyFaces:
    """HR crops (LFW central-box rule) of the 1,220 verify/ images that pairs.txt uses."""
    return load_verify_faces(verify_root)
