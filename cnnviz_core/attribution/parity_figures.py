"""Parity figures of the methods against their reference libraries, as the parity tests measured them
(the smallest Pearson r over each test's maps). Documentation for the README's method table
(``python -m cnnviz_core methods --markdown``); the tests assert their own thresholds."""
from __future__ import annotations

#: method key -> figure, with the test that measures it.
PARITY: dict[str, str] = {}
