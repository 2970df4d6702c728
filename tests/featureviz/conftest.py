"""Fixtures for the feature-visualization tests: small models that need no download."""
from __future__ import annotations

import pytest

from cnnviz_core import load_model
from cnnviz_core.models.catalog import WEIGHTS_DIR


@pytest.fixture(scope="module")
def random_shapes():
    """shapes-cnn with random weights (seed 0), loaded per test module."""
    return load_model("shapes-cnn", weights=None)


@pytest.fixture(scope="module")
def viz_shapes():
    """shapes-cnn with trained weights when the bundled file exists, else random weights."""
    trained = (WEIGHTS_DIR / "shapes-cnn.pt").is_file()
    return load_model("shapes-cnn", weights="default" if trained else None)


@pytest.fixture(scope="module")
def random_vgg19():
    return load_model("vgg19", weights=None)
