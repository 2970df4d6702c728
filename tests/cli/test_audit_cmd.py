"""``python -m cnnviz_core audit``: summary output, JSON, failures, kill-and-resume, no Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnviz_core.audit.results import read_results
from cnnviz_core.cli import main
from cnnviz_core.scenes import generate_scene, write_scenes

FAST = ("--model", "shapes-cnn", "--weights", "none", "--device", "cpu", "--steps", "4")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_scenes")
    write_scenes((generate_scene(3, i) for i in range(20)), out, seed=3)
    return out


def audit_cmd(*args: str, cwd, env=None, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}import sys; from cnnviz_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "audit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_audit_json_summary_with_pointing(scenes, tmp_path, repo_root):
    out = audit_cmd(str(scenes), *FAST, "--methods", "gradcam,saliency", "--metrics", "deletion,insertion,pointing",
                    "--out", str(tmp_path / "r"), "--limit", "6", "--no-ray", "--json", "--save-maps", cwd=repo_root)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["processed"] == 6 and doc["run"]["backend"] == "in-process"
    assert [m["method"] for m in doc["methods"]] == ["gradcam", "saliency"]
    assert all(m["pointing_n"] == 6 and 0 <= m["pointing_acc"] <= 1 for m in doc["methods"])
    df = read_results(tmp_path / "r").to_pandas()
    assert len(df) == 12 and df["map_path"].map(lambda p: (tmp_path / "r" / p).is_file()).all()
    assert "audit:" in out.stderr  # the tqdm progress bar


@pytest.mark.slow
def test_without_ray_installed_runs_in_process(scenes, tmp_path, repo_root):
    out = audit_cmd(str(scenes), *FAST, "--out", str(tmp_path / "r"), "--limit", "2", "--quiet", cwd=repo_root,
                    prelude="import sys; sys.modules['ray'] = None; ")  # `import ray` fails
    assert out.returncode == 0, out.stderr
    assert "in-process" in out.stdout and "2 images audited" in out.stdout
    out = audit_cmd(str(scenes), *FAST, "--out", str(tmp_path / "r2"), "--ray-address", "auto", cwd=repo_root,
                    prelude="import sys; sys.modules['ray'] = None; ")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Ray is not installed" in out.stderr


@pytest.mark.parametrize("args, message", [
    (("--methods", "gradcam,nope"), "unknown method 'nope'"),
    (("--metrics", "deletion,auc"), "unknown metric 'auc'"),
    (("--batch-size", "0"), "batch size"),
    (("--steps", "1"), "steps must be >= 2"),
])
def test_bad_arguments_one_line(scenes, tmp_path, capsys, args, message):
    assert main(["audit", str(scenes), *FAST, "--out", str(tmp_path / "r"), "--no-ray", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.glob("r/part-*"))


def test_missing_images_one_line(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nothing"), *FAST, "--out", str(tmp_path / "r"), "--no-ray"]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and err.count("\n") == 1


@pytest.mark.slow
def test_sigkill_mid_run_loses_no_rows_and_rerun_completes(scenes, tmp_path, repo_root):
    results = tmp_path / "r"
    args = (str(scenes), *FAST, "--methods", "gradcam,eigencam", "--metrics", "deletion,pointing",
            "--out", str(results), "--batch-size", "2", "--no-ray", "--quiet")
    code = "import sys; from cnnviz_core.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "audit", *args], cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(list(results.glob("part-*.parquet"))) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "no parts written"
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    written = read_results(results).to_pandas()  # every finished part is whole and readable
    assert 6 <= len(written) < 40 and len(written) % 4 == 0
    assert all(sorted(g) == ["eigencam", "gradcam"] for _, g in written.groupby("path")["method"])
    rerun = audit_cmd(*args, "--json", cwd=repo_root)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["run"]["skipped"] == written["path"].nunique() and doc["run"]["processed"] == 20 - doc["run"]["skipped"]
    final = read_results(results).to_pandas()
    assert len(final) == 40 and not final.duplicated(["path", "method"]).any()
    assert (final["status"] == "ok").all()
