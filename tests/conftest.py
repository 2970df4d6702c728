"""Shared fixtures. Tests run offline (CNNVIZ_OFFLINE=1): nothing tries to download weights."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CNNVIZ_OFFLINE", "1")
os.environ.setdefault("CNNVIZ_DEVICE", "cpu")
# The architecture-signature index is built once per checkout (ignored artifacts/), not in ~/.cache.
os.environ.setdefault("CNNVIZ_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "artifacts" / "cache"))

import torch  # noqa: E402

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shapes_model():
    """The bundled shapes-cnn, loaded once per test session (shared, like in the app)."""
    from cnnviz_core import load_model

    return load_model("shapes-cnn")


@pytest.fixture(scope="session")
def shapes_scene_image():
    """A two-object generated scene as a PIL image."""
    from PIL import Image

    from cnnviz_core.scenes import generate_scene

    return Image.fromarray(generate_scene(11, objects=2).image)
