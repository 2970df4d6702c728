"""Fixtures of the audit tests: small generated scene sets and ONE local Ray instance per session."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnviz_core.scenes import generate_scene, write_scenes


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory):
    """20 one-object scenes (seed 5) written with ``scenes.json`` and masks."""
    out = tmp_path_factory.mktemp("scenes")
    write_scenes((generate_scene(5, i) for i in range(20)), out, seed=5)
    return out


@pytest.fixture(scope="session")
def random_shapes():
    """shapes-cnn with random weights (deterministic, independent of the training run)."""
    from cnnviz_core import load_model

    return load_model("shapes-cnn", weights=None, device="cpu")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance (2 CPUs, 200 MB object store, no dashboard), shut down at the end."""
    import ray
    from cnnviz_core.audit.runner import LOCAL_RAY

    started = not ray.is_initialized()
    if started:
        ray.init(log_to_driver=False, **LOCAL_RAY)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def bad_folder(tmp_path, scenes_dir):
    """3 good scenes + a corrupt PNG, an empty JPEG, a 51 MB file and a decompression bomb."""
    for i in range(3):
        (tmp_path / f"good_{i}.png").write_bytes((scenes_dir / f"scene_{i:04d}.png").read_bytes())
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with open(tmp_path / "huge.png", "wb") as fh:  # sparse file over the 50 MB upload limit
        fh.truncate(51 * 2**20)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "tiny_ok_gray.png")
    Image.new("L", (9000, 9000)).save(tmp_path / "bomb.png", optimize=True)  # 81 Mpx > 40 Mpx limit
    return tmp_path
