"""Streamlit's own protections stay on (issue 15): XSRF protection is not disabled, neither in
``.streamlit/config.toml`` nor on any command line the project starts the server with."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_config_keeps_xsrf_protection_on():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = config.get("server", {})
    assert server.get("enableXsrfProtection", True) is True, server  # absent = Streamlit's default, on


def test_streamlit_reads_xsrf_protection_on(monkeypatch):
    from streamlit import config

    monkeypatch.chdir(REPO)  # the project's .streamlit/config.toml
    config.get_config_options(force_reparse=True)
    try:
        assert config.get_option("server.enableXsrfProtection") is True
    finally:
        config.get_config_options(force_reparse=True)


def test_no_launcher_turns_it_off():
    files = [REPO / "Makefile", REPO / "README.md", *REPO.glob("cnnviz_ui/*.py"), *REPO.glob("tests/e2e/*.py")]
    pattern = re.compile(r"enableXsrfProtection\W+(false|0)", re.IGNORECASE)
    offenders = [f.name for f in files if f.is_file() and pattern.search(f.read_text(errors="replace"))]
    assert not offenders, offenders
