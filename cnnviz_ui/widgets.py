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


# ---- exports: every grid as PNG, raw values as NumPy / JSON, every table as CSV -------------------
# Encoders are plain functions (testable without Streamlit); pages pass them as callables so the bytes
# are only made when the user clicks (Streamlit runs a callable ``data`` on another thread).


def png_bytes(rgb) -> bytes:
    """``(H, W, 3)`` (or ``(H, W)``) uint8 array -> PNG bytes."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def map_panels(maps, labels: Sequence[str], *, colormap: str = "Viridis", shared: bool = False,
               min_side: int = 96) -> dict:
    """``(N, H, W)`` float maps -> ``{label: (H', W', 3) uint8}`` coloured like the page's heat-map grids
    (each map on its own scale, or one scale for all with ``shared``), enlarged by whole pixels so the
    shorter side is at least ``min_side``."""
    import math

    import numpy as np

    from cnnviz_core import plots

    maps = list(maps)
    zmin, zmax = plots.scale_range(maps) if shared else (None, None)
    out = {}
    for label, m in zip(labels, maps):
        rgb = plots.apply_colormap(np.asarray(m, dtype=np.float32), colormap, zmin, zmax)
        f = max(1, math.ceil(min_side / max(1, min(rgb.shape[:2]))))
        out[str(label)] = np.repeat(np.repeat(rgb, f, axis=0), f, axis=1) if f > 1 else rgb
    return out


def grid_png_bytes(panels, cols: int = 4) -> bytes:
    """Titled uint8 panels (``{title: (H, W, 3)}``) on one white grid, as PNG bytes."""
    from cnnviz_core import plots

    return plots.grid_png({k: _rgb(v) for k, v in panels.items()}, cols=cols)


def _rgb(a):
    import numpy as np

    a = np.asarray(a, dtype=np.uint8)
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def npz_bytes(arrays) -> bytes:
    """``{name: array}`` -> compressed ``.npz`` bytes (names made safe for ``np.load``)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **{_safe_name(k): np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _safe_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or "array"


def json_bytes(obj, digits: int = 5) -> bytes:
    """``obj`` as JSON: numpy arrays and scalars become (rounded) lists and numbers."""
    import json

    import numpy as np

    def default(o):
        if isinstance(o, np.ndarray):
            return np.round(o.astype(float), digits).tolist() if o.dtype.kind == "f" else o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (set, frozenset, tuple)):
            return list(o)
        return str(o)

    return json.dumps(obj, default=default).encode()


def csv_bytes(rows: Sequence[dict]) -> bytes:
    """Table rows (dicts sharing keys; the first row's order, later new keys appended) -> CSV bytes."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue().encode()


def _cell(value) -> object:
    """A CSV cell: None -> empty; text that a spreadsheet would run as a formula (``=``, ``+``, ``-``,
    ``@``, tab, CR first: a path in an uploaded results file may be hostile) gets a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_buttons(key: str, stem: str, *, png=None, npz=None, npy=None, json=None, csv=None,
                   what: str = "Maps", png_label: str = "Grid (PNG)") -> None:
    """One row of download buttons named like the CAM page's (``Grid (PNG)``, ``Maps (NumPy .npz)``,
    ``Maps (JSON)``): each argument is bytes or a zero-argument callable returning bytes (made on
    click). Files are ``cnnviz-{stem}.{ext}``."""
    from .layout import download_buttons

    items = []
    if png is not None:
        items.append((png_label, png, f"cnnviz-{stem}.png", "image/png"))
    if npz is not None:
        items.append((f"{what} (NumPy .npz)", npz, f"cnnviz-{stem}.npz", "application/octet-stream"))
    if npy is not None:
        items.append((f"{what} (NumPy .npy)", npy, f"cnnviz-{stem}.npy", "application/octet-stream"))
    if json is not None:
        items.append((f"{what} (JSON)", json, f"cnnviz-{stem}.json", "application/json"))
    if csv is not None:
        items.append(("Table (CSV)", csv, f"cnnviz-{stem}.csv", "text/csv"))
    if items:
        download_buttons(items, key=key)


def table_download(rows: Sequence[dict], key: str, stem: str) -> None:
    """A *Table (CSV)* button for ``rows`` (what ``st.dataframe`` shows)."""
    export_buttons(key, stem, csv=lambda: csv_bytes(rows))


# ---- stale state: widgets whose options depend on the model --------------------------------------


def reset_on_model_change(handle: ModelHandle, *keys: str) -> None:
    """Forget the values of the widgets ``keys`` when the model differs from the one they were set
    for, so that no widget shows another model's layers, channels or classes after the sidebar's
    model changes. Call before drawing the widgets."""
    for key in keys:
        owner = f"_model_of_{key}"
        if st.session_state.get(owner) != handle.key:
            st.session_state.pop(key, None)
            st.session_state[owner] = handle.key


def keep_in(key: str, options: Sequence, default=None) -> None:
    """Reset the session value of widget ``key`` to ``default`` (the first option) when it is not
    among ``options``."""
    if st.session_state.get(key) not in list(options):
        st.session_state[key] = default if default is not None else (list(options)[0] if options else None)


def clamp_int(key: str, low: int, high: int, default: int) -> int:
    """Keep widget ``key``'s session value in ``low..high`` (``default`` when unset); returns it."""
    value = st.session_state.get(key, default)
    try:
        value = int(value)
    except (TypeError, ValueError):
        value = default
    st.session_state[key] = min(max(value, low), high)
    return st.session_state[key]
