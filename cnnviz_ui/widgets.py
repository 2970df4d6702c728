"""Widgets several pages share (target class picker, method picker with paper captions)."""
from __future__ import annotations

from typing import Optional, Sequence

import streamlit as st

from cnnviz_core import ModelHandle

from .compute import predict
from .state import Selection


def target_picker(handle: ModelHandle, sel: Selection, key: str, label: str = "Explain class") -> Optional[int]:
    """Class to explain: ``None`` = the top-1 prediction, else a class index (top-5 listed first)."""
    preds = predict(handle, sel, topk=min(5, handle.num_classes))
    probs = {i: p for i, _, p in preds}
    options: list[Optional[int]] = [None] + [i for i, _, _ in preds]
    options += [i for i in range(handle.num_classes) if i not in probs]

    def fmt(i: Optional[int]) -> str:
        if i is None:
            return f"Top prediction: {preds[0][1]} ({preds[0][2]:.0%})"
        name = handle.class_name(i)
        return f"{name} ({probs[i]:.0%})" if i in probs else name

    if st.session_state.get(key, None) not in options:
        st.session_state[key] = None
    return st.selectbox(label, options, format_func=fmt, key=key)


def method_caption(keys: Sequence[str]) -> str:
    """One markdown line per method: name, paper (linked) and cost, from the METHODS metadata."""
    from cnnviz_core.attribution import METHODS

    lines = []
    for k in keys:
        m = METHODS[k]
        lines.append(f"- **{m.display_name}** — {m.paper.authors} {m.paper.year}, "
                     f"[*{m.paper.title}*]({m.paper.link}) · cost: {m.cost}")
    return "\n".join(lines)
