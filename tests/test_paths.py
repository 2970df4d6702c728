"""Confined server paths: :func:`confine` and :func:`safe_join` refuse what leads out of the roots."""
from __future__ import annotations

import os

import pytest

from cnnviz_core.errors import ParameterError, PathNotAllowedError
from cnnviz_core.paths import DATA_ROOT_ENV, MODEL_ROOT_ENV, confine, data_roots, is_within, model_roots, safe_join


@pytest.fixture
def tree(tmp_path):
    """``roots/a`` and ``roots/b`` (the roots), ``outside/`` with a secret file, and symlinks."""
    a, b, out = tmp_path / "roots" / "a", tmp_path / "roots" / "b", tmp_path / "outside"
    for d in (a / "run1", b, out):
        d.mkdir(parents=True)
    (out / "secret.npy").write_bytes(b"TOPSECRET-CONTENT")
    (a / "run1" / "part.parquet").write_bytes(b"ok")
    (a / "leak").symlink_to(out)                      # leads out
    (a / "alias").symlink_to(a / "run1")              # stays inside
    return a.resolve(), b.resolve(), out.resolve()


def test_relative_path_is_taken_from_the_first_root(tree, tmp_path, monkeypatch):
    a, b, _ = tree
    monkeypatch.chdir(tmp_path)  # the cwd is not where relative paths start
    assert confine("run1", [a, b]) == a / "run1"
    assert confine("run1/part.parquet", [a, b]) == a / "run1" / "part.parquet"
    assert confine("does-not-exist-yet", [a]) == a / "does-not-exist-yet"
    assert confine(a, [a]) == a  # a root itself is allowed


def test_absolute_path_inside_another_root_is_allowed(tree):
    a, b, _ = tree
    assert confine(str(b), [a, b]) == b


def test_absolute_path_outside_is_refused_in_one_line(tree):
    a, b, out = tree
    with pytest.raises(PathNotAllowedError) as err:
        confine(str(out / "secret.npy"), [a, b])
    message = str(err.value)
    assert "\n" not in message and str(a) in message and str(b) in message and DATA_ROOT_ENV in message
    assert "secret.npy" in message and "TOPSECRET" not in message  # names the path, never its content
    assert isinstance(err.value, ParameterError)
    with pytest.raises(PathNotAllowedError):
        confine("/etc/passwd", [a])


@pytest.mark.parametrize("text", ["../outside/secret.npy", "run1/../run1", "run1/..", ".."])
def test_dotdot_is_refused_even_when_it_resolves_inside(tree, text):
    a, _, _ = tree
    with pytest.raises(PathNotAllowedError, match=r"'\.\.'"):
        confine(text, [a])


def test_dotdot_in_an_absolute_path_is_refused(tree):
    a, _, _ = tree
    with pytest.raises(PathNotAllowedError, match=r"'\.\.'"):
        confine(f"{a}/run1/../run1", [a])


def test_symlink_out_is_refused_and_symlink_inside_is_allowed(tree):
    a, _, out = tree
    with pytest.raises(PathNotAllowedError, match="outside the allowed folders"):
        confine("leak/secret.npy", [a])
    with pytest.raises(PathNotAllowedError):
        confine("leak", [a])
    assert confine("alias/part.parquet", [a]) == a / "run1" / "part.parquet"
    assert not is_within(a / "leak" / "secret.npy", [a]) and is_within(a / "alias", [a])


@pytest.mark.parametrize("text", ["", "   ", "run1\x00.parquet"])
def test_empty_and_nul_are_refused(tree, text):
    a, _, _ = tree
    with pytest.raises(PathNotAllowedError):
        confine(text, [a])


def test_control_characters_are_not_echoed(tree):
    a, _, _ = tree
    with pytest.raises(PathNotAllowedError) as err:
        confine("/etc/\x1b[31mred\nline", [a])
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)


def test_no_roots_is_refused(tree):
    with pytest.raises(PathNotAllowedError, match="no allowed folders"):
        confine("x", [])


def test_env_var_with_two_roots(tree, tmp_path, monkeypatch):
    a, b, out = tree
    monkeypatch.setenv(DATA_ROOT_ENV, f"{a}{os.pathsep}{b}{os.pathsep}")
    assert data_roots() == (a, b)
    assert confine(str(b), data_roots()) == b and confine("run1", data_roots()) == a / "run1"
    with pytest.raises(PathNotAllowedError):
        confine(str(out), data_roots())
    monkeypatch.setenv(MODEL_ROOT_ENV, str(b))
    assert model_roots() == (b,)


def test_defaults_are_results_and_models_under_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.delenv(MODEL_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_roots() == ((tmp_path / "results").resolve(),)
    assert model_roots() == ((tmp_path / "models").resolve(),)
    monkeypatch.setenv(DATA_ROOT_ENV, "data")  # relative entries start at the cwd
    assert data_roots() == ((tmp_path / "data").resolve(),)


def test_base_for_relative_paths(tree):
    a, b, _ = tree
    assert confine("x.png", [a, b], base=b) == b / "x.png"
    with pytest.raises(PathNotAllowedError):
        confine("x.png", [a], base=b)


def test_safe_join(tree):
    a, _, out = tree
    folder = a / "run1"
    assert safe_join(folder, "part.parquet") == folder / "part.parquet"
    assert safe_join(folder, "maps/img-1/gradcam.npy") == folder / "maps" / "img-1" / "gradcam.npy"
    (folder / "maps").mkdir()
    (folder / "maps" / "leak").symlink_to(out)
    for bad in ("../../../outside/secret.npy", str(out / "secret.npy"), "maps/leak/secret.npy",
                "maps/../part.parquet", "", "a\x00b"):
        with pytest.raises(PathNotAllowedError):
            safe_join(folder, bad)
