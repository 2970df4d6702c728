"""The audit end to end (in-process and on a local Ray instance): rows, failures, resume."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from cnnviz_core.audit.results import read_results
from cnnviz_core.audit.runner import run_audit
from cnnviz_core.audit.sources import list_images
from cnnviz_core.audit.worker import AuditConfig
from cnnviz_core.errors import ParameterError

FAST = dict(weights=None, device="cpu", steps=4)


def _pairs(df):
    return list(zip(df["path"], df["method"]))


@pytest.mark.slow
def test_in_process_rows_metrics_and_resume(scenes_dir, tmp_path):
    items = list_images(str(scenes_dir))
    config = AuditConfig("shapes-cnn", ("gradcam", "eigencam"), ("deletion", "insertion", "pointing"), **FAST)
    first = run_audit(items[:12], config, tmp_path / "r", use_ray=False, batch_size=5, save_maps=True,
                      progress=False)
    assert (first.processed, first.rows_ok, first.rows_failed) == (12, 24, 0)
    assert len(list((tmp_path / "r").glob("part-*.parquet"))) == 3  # one part per batch
    df = read_results(tmp_path / "r").to_pandas()
    assert len(df) == 24 and (df["status"] == "ok").all()
    assert (df["target"] == df["label"]).all()  # auto target = the scene's class
    for col in ("deletion_auc", "insertion_auc", "energy_pointing", "score"):
        assert df[col].between(0, 1).all(), col
    assert df["pointing_hit"].isin([0.0, 1.0]).all()
    assert (df["seconds"] > 0).all() and (df["map_path"] != "").all()
    assert (tmp_path / "r" / df["map_path"].iloc[0]).is_file()
    # rerun over all 20: only the 8 missing images are audited, every pair exactly once
    second = run_audit(items, config, tmp_path / "r", use_ray=False, batch_size=5, progress=False)
    assert (second.skipped, second.processed) == (12, 8)
    df = read_results(tmp_path / "r").to_pandas()
    assert len(df) == 40 and len(set(_pairs(df))) == 40
    # adding a method later computes only the new (path, method) pairs
    third = run_audit(items[:3], AuditConfig("shapes-cnn", ("gradcam", "layercam"), ("deletion",), **FAST),
                      tmp_path / "r", use_ray=False, progress=False)
    df = read_results(tmp_path / "r").to_pandas()
    assert third.rows_ok == 3 and len(df) == 43 and len(set(_pairs(df))) == 43


@pytest.mark.slow
def test_corrupt_empty_huge_files_become_failed_rows(bad_folder, tmp_path):
    items = list_images(str(bad_folder))
    config = AuditConfig("shapes-cnn", ("gradcam",), ("deletion",), **FAST)
    summary = run_audit(items, config, tmp_path / "r", use_ray=False, batch_size=8, progress=False)
    df = read_results(tmp_path / "r").to_pandas().set_index("path")
    assert len(df) == len(items) == 8 and summary.rows_failed == 4
    failed = {p.rsplit("/", 1)[-1]: e for p, e in df[df["status"] == "failed"]["error"].items()}
    assert set(failed) == {"corrupt.png", "empty.jpg", "huge.png", "bomb.png"}
    assert all(failed.values()) and "MB" in failed["huge.png"]
    ok = df[df["status"] == "ok"]
    assert len(ok) == 4 and ok["deletion_auc"].notna().all()
    assert ok["pointing_hit"].isna().all()  # no masks for a plain folder


def test_resume_refuses_a_different_audit(scenes_dir, tmp_path):
    items = list_images(str(scenes_dir), limit=1)
    run_audit(items, AuditConfig("shapes-cnn", ("gradcam",), ("deletion",), **FAST), tmp_path, use_ray=False,
              progress=False)
    with pytest.raises(ParameterError, match="steps"):
        run_audit(items, AuditConfig("shapes-cnn", ("gradcam",), ("deletion",), weights=None, device="cpu",
                                     steps=8), tmp_path, use_ray=False, progress=False)


def test_bad_configuration_is_rejected_before_running(scenes_dir, tmp_path):
    items = list_images(str(scenes_dir), limit=1)
    with pytest.raises(ParameterError, match="unknown method"):
        run_audit(items, AuditConfig("shapes-cnn", ("gradcam", "nope"), **FAST), tmp_path, use_ray=False)
    with pytest.raises(ParameterError, match="unknown metric"):
        run_audit(items, AuditConfig("shapes-cnn", ("gradcam",), ("auc",), **FAST), tmp_path, use_ray=False)
    with pytest.raises(ParameterError, match="target"):
        run_audit(items, AuditConfig("shapes-cnn", ("gradcam",), target="best", **FAST), tmp_path, use_ray=False)
    assert not list(tmp_path.glob("part-*"))


@pytest.mark.slow
def test_ray_run_matches_in_process(scenes_dir, tmp_path, ray_local):
    items = list_images(str(scenes_dir), limit=8)
    config = AuditConfig("shapes-cnn", ("gradcam",), ("deletion", "insertion", "pointing"), **FAST)
    on_ray = run_audit(items, config, tmp_path / "ray", use_ray=True, workers=2, batch_size=3, progress=False)
    assert on_ray.backend == "ray" and on_ray.rows_ok == 8
    assert len(list((tmp_path / "ray").glob("part-*.parquet"))) == 3
    run_audit(items, config, tmp_path / "local", use_ray=False, batch_size=3, progress=False)
    a = read_results(tmp_path / "ray").to_pandas().sort_values("path").reset_index(drop=True)
    b = read_results(tmp_path / "local").to_pandas().sort_values("path").reset_index(drop=True)
    assert list(a["path"]) == list(b["path"])
    for col in ("deletion_auc", "insertion_auc", "pointing_hit", "energy_pointing", "target", "prediction"):
        assert a[col].to_numpy() == pytest.approx(b[col].to_numpy(), abs=1e-5), col
    # rerun on Ray: nothing left to do
    again = run_audit(items, config, tmp_path / "ray", use_ray=True, workers=2, batch_size=3, progress=False)
    assert again.processed == 0 and again.skipped == 8
    assert pq.read_table(sorted((tmp_path / "ray").glob("part-*.parquet"))[0]).num_rows == 3


def test_resume_refuses_another_file_of_the_same_name(scenes_dir, tmp_path):
    import torch

    from cnnviz_core.models import UserModelOptions, get_architecture

    items = list_images(str(scenes_dir))[:2]
    path = tmp_path / "mine.pth"
    options = UserModelOptions(arch="shapes-cnn")
    config = AuditConfig(str(path), ("gradcam",), ("deletion",), weights="default", device="cpu", steps=4,
                         options=options)
    for seed in (1, 2):  # the same file name, retrained
        torch.manual_seed(seed)
        torch.save(get_architecture("shapes-cnn").build().state_dict(), path)
        if seed == 1:
            run_audit(items[:1], config, tmp_path / "r", use_ray=False, progress=False)
    with pytest.raises(ParameterError, match="model_identity"):
        run_audit(items, config, tmp_path / "r", use_ray=False, progress=False)
