"""Widgets several pages share (target class picker, method picker with paper captions)."""
from __future__ import annotations

from typing import Optional, Sequence

import streamlit as st

from cnnviz_core import ModelHandle

from .compute import predict
from .state import Selection


TOP = -1


def target_picker(handle: ModelHandle, sel: Selection, key: str, label: str = "Explain class") -> Optional[int]:
    """Class to explain: ``None`` = the top-1 prediction, else a class index (top-5 listed first)."""
    preds = predict(handle, sel, topk=min(5, handle.num_classes))
    probs = {i: p for i, _, p in preds}
    # -1 = "the top prediction" (not None: a selectbox whose state is None shows an empty placeholder
    # after its options change, e.g. when another model with other classes is loaded).
    options: list[int] = [TOP] + [i for i, _, _ in preds]
    options += [i for i in range(handle.num_classes) if i not in probs]

    def fmt(i: int) -> str:
        if i == TOP:
            return f"Top prediction: {preds[0][1]} ({preds[0][2]:.0%})"
        name = handle.class_name(i)
        return f"{name} ({probs[i]:.0%})" if i in probs else name

    if st.session_state.get(key, None) not in options:
        st.session_state[key] = TOP
    picked = st.selectbox(label, options, format_func=fmt, key=key)
    return None if picked in (None, TOP) else int(picked)


def fits_page(handle: ModelHandle, needs: Sequence[str]) -> bool:
    """Whether ``handle`` can serve a page that ``needs`` ``"hooks"`` (layer activations) and/or
    ``"conv"`` (convolution layers); when not, one ``st.info`` line says why (the page goes on)."""
    from .user_model import fits

    reason = fits(handle, needs)
    if reason:
        st.info(reason, icon=":material/info:")
    return reason is None


def method_caption(keys: Sequence[str]) -> str:
    """One markdown line per method: name, paper (linked) and cost, from the METHODS metadata."""
    from cnnviz_core.attribution import METHODS

    lines = []
    for k in keys:
        m = METHODS[k]
        lines.append(f"- **{m.display_name}** — {m.paper.authors} {m.paper.year}, "
                     f"[*{m.paper.title}*]({m.paper.link}) · cost: {m.cost}")
    return "\n".join(lines)
