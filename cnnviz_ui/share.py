"""Shareable views: the URL's query string holds the page's state (``st.query_params``).

One table, :data:`SIDEBAR` plus :data:`PAGES`, says which URL parameter carries which widget key
and how its value is written. The sidebar reads the URL **once per session**, at its start
(:func:`seed_from_url`), and puts the values into the widgets' session state before they are drawn;
afterwards the widgets own the state, and every run writes their values back (:func:`write`), so the
address bar always holds a link that reproduces the view in a fresh browser. Unknown or invalid
values are ignored (the widget keeps its default).

The page itself is the URL's path (``/cam``, from ``st.navigation``'s ``url_path``). Uploads cannot
travel in a link: :func:`upload_note` says so in one line where the view needs one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import urlencode

import streamlit as st

_SEEDED = "_cnnviz_url_seeded"


def slug(text: str) -> str:
    """``"Scene: two shapes (seed 11)"`` -> ``"scene-two-shapes-seed-11"`` (readable in a URL)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class Param:
    """URL parameter ``name`` <-> session-state ``key``.

    ``kind``: ``str``, ``int``, ``float``, ``bool``, ``list`` (comma separated), ``target`` (an int
    or absent = the top prediction), ``choice`` (``choices`` maps URL value -> state value) or
    ``slug`` (``options()`` lists the valid state values; the URL holds their :func:`slug`).
    ``persisted``: a sidebar widget using ``persist(...)`` (its ``_keep_`` copy is seeded too).
    """

    name: str
    key: str
    kind: str = "str"
    choices: Optional[Mapping[str, Any]] = None
    options: Optional[Callable[[], Sequence[str]]] = None
    persisted: bool = False

    def encode(self, value: Any) -> Optional[str]:
        """The URL text of a state value (None: leave the parameter out)."""
        if value is None:
            return None
        if self.kind == "bool":
            return "1" if value else "0"
        if self.kind == "list":
            return ",".join(str(v) for v in value)
        if self.kind == "target":
            return None if int(value) < 0 else str(int(value))
        if self.kind == "choice":
            return next((k for k, v in (self.choices or {}).items() if v == value), None)
        if self.kind == "slug":
            return slug(str(value))
        if self.kind == "float":
            return f"{float(value):g}"
        return str(value)

    def decode(self, text: str) -> Any:
        """The state value of a URL text; raises ValueError when it is not valid."""
        if self.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if self.kind == "int":
            return int(text)
        if self.kind == "float":
            return float(text)
        if self.kind == "target":
            value = int(text)
            if value < 0:
                raise ValueError(text)
            return value
        if self.kind == "list":
            return [v for v in (s.strip() for s in text.split(",")) if v]
        if self.kind == "choice":
            if text not in (self.choices or {}):
                raise ValueError(text)
            return (self.choices or {})[text]
        if self.kind == "slug":
            options = list(self.options() if self.options else [])
            for option in options:
                if text == option or text == slug(option):
                    return option
            raise ValueError(text)
        return text


def _model_names() -> list[str]:
    from cnnviz_core import entries

    return [e.name for e in entries()]


def _samples() -> list[str]:
    from cnnviz_core import SAMPLES

    return list(SAMPLES)


#: The sidebar's state (shared by every page).
SIDEBAR: tuple[Param, ...] = (
    Param("source", "sb_model_source", "choice", choices={"catalog": "Catalog", "yours": "Your model"},
          persisted=True),
    Param("model", "sb_model", "slug", options=_model_names, persisted=True),
    Param("random", "sb_random", "bool", persisted=True),
    Param("image", "sb_source", "choice", choices={"sample": "Sample gallery", "upload": "Upload"}, persisted=True),
    Param("sample", "sb_sample", "slug", options=_samples, persisted=True),
)

#: Each page's own state, by the page's url path.
PAGES: dict[str, tuple[Param, ...]] = {
    "cam": (
        Param("methods", "cam_methods", "list"),
        Param("layer", "cam_layer"),
        Param("target", "cam_target", "target"),
        Param("cmap", "cam_cmap", "str"),
        Param("opacity", "cam_opacity", "float"),
        Param("scale", "cam_shared", "choice", choices={"shared": True, "own": False}),
        Param("cols", "cam_cols", "int"),
        Param("view", "cam_view", "choice", choices={"methods": "Methods side by side", "classes": "Per class",
                                                     "layers": "Per layer", "images": "Images × methods"}),
        Param("sc", "cam_sc_mode", "choice", choices={"exact": "exact", "topk": "topk"}),
        Param("sc_k", "cam_sc_channels", "int"),
        Param("sg_n", "cam_sg_samples", "int"),
        Param("sg_noise", "cam_sg_noise", "float"),
        Param("ig_steps", "cam_ig_steps", "int"),
        Param("ig_base", "cam_ig_baseline", "choice", choices={"black": "black", "zero": "zero"}),
        Param("occ_patch", "cam_occ_patch", "int"),
        Param("occ_stride", "cam_occ_stride", "int"),
    ),
}


def all_params() -> list[Param]:
    return [*SIDEBAR, *(p for params in PAGES.values() for p in params)]


def seed_values(query: Mapping[str, str]) -> dict[str, Any]:
    """``{session-state key: value}`` from a query string's params (invalid ones left out). Pure."""
    out: dict[str, Any] = {}
    for p in all_params():
        if p.name in query:
            try:
                out[p.key] = p.decode(str(query[p.name]))
            except (TypeError, ValueError):
                continue
    return out


def seed_from_url() -> None:
    """Once per session, before the sidebar draws: URL params -> widget state (and ``_keep_`` copies)."""
    if st.session_state.get(_SEEDED):
        return
    st.session_state[_SEEDED] = True
    by_key = {p.key: p for p in all_params()}
    for key, value in seed_values(st.query_params.to_dict()).items():
        st.session_state[key] = value
        if by_key[key].persisted:
            st.session_state[f"_keep_{key}"] = value


def encode_state(params: Sequence[Param], state: Mapping[str, Any]) -> dict[str, Optional[str]]:
    """``{url name: text or None}`` of ``params`` from a state mapping (absent keys -> None). Pure."""
    return {p.name: (p.encode(state[p.key]) if p.key in state else None) for p in params}


def write(values: Mapping[str, Optional[str]]) -> None:
    """Set these URL params (``None`` removes one); nothing is sent when the URL already holds them."""
    current = st.query_params.to_dict()
    changes = {k: v for k, v in values.items() if v is not None and current.get(k) != v}
    removals = [k for k, v in values.items() if v is None and k in current]
    if changes:
        st.query_params.update(changes)
    for k in removals:
        del st.query_params[k]


def write_params(params: Sequence[Param]) -> None:
    """Write the current session-state values of ``params`` to the URL."""
    write(encode_state(params, st.session_state))


def write_sidebar() -> None:
    write_params(SIDEBAR)


def write_page(page: str, only: Optional[Sequence[str]] = None) -> None:
    """Write ``page``'s params (or the ``only`` ones, by URL name) and drop those of other pages."""
    own = PAGES.get(page, ())
    if only is None:
        foreign = {p.name for name, params in PAGES.items() if name != page for p in params} - {p.name for p in own}
        write({name: None for name in foreign})
    write_params([p for p in own if only is None or p.name in only])


def share_link() -> str:
    """The URL of this view: the page's address (``st.context.url``) and the current query string."""
    try:
        base = st.context.url or ""
    except Exception:  # noqa: BLE001 - no browser context (AppTest, bare mode)
        base = ""
    query = urlencode(st.query_params.to_dict())
    return f"{base}?{query}" if query else (base or "?")


def upload_note(sel) -> Optional[str]:
    """One line when the view needs an upload a link cannot carry (your model, uploaded images)."""
    needs = []
    if getattr(sel, "user_model", False):
        needs.append("your model file")
    if getattr(sel, "images", ()) or st.session_state.get("sb_source") == "Upload":
        needs.append("the uploaded image(s)")
    if not needs:
        return None
    return (f"This view needs {' and '.join(needs)}: a link cannot carry uploads, so whoever opens it uploads "
            "the same file(s) in the sidebar (the link holds every other setting).")


def share_box(sel, key: str = "share") -> None:
    """A "Copy link" popover: the view's URL in a code block (with Streamlit's copy button), and the
    one-line upload note where it applies."""
    with st.popover("Copy link", icon=":material/link:"):
        st.code(share_link(), language=None, wrap_lines=True)
        st.caption("Opens this page with the same model, image, methods, layer, class and display settings.")
        note = upload_note(sel)
        if note:
            st.caption(note)
