"""A self-contained HTML report of a CAM comparison: one file, images embedded as base64 PNG, no
script, no external resource, so it opens from disk in any browser with no server and no network.

:func:`build_report` is a pure function (``ReportData`` -> ``str``): every piece of user text
(model, labels, image name, class names, parameter values, notes) goes through ``html.escape``.
For an audit trail it records the model (name, weights, identity and, for a file, its sha256), the
image's sha256 digest, the cnnviz version and the time it was made.
"""
from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Sequence

import numpy as np

_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


def png_bytes(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def file_sha256(identity: str) -> Optional[str]:
    """The sha256 of a model file named in a handle's ``identity`` (``name|file:<sha256>|spec``), if any."""
    found = _SHA256.search(identity or "")
    return found.group(0) if found else None


@dataclass(frozen=True)
class ReportMap:
    """One map of the comparison: the method, its parameters and cost, the overlay, its metrics."""

    method: str                     # display name
    key: str                        # registry key
    png: bytes                      # the overlay as shown (PNG)
    params: Mapping[str, Any] = field(default_factory=dict)
    cost: str = ""
    seconds: Optional[float] = None
    deletion: Optional[float] = None
    insertion: Optional[float] = None
    notes: Sequence[str] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)  # registered metrics: "name (direction)" -> value


@dataclass(frozen=True)
class ReportData:
    model_name: str
    weights_label: str
    model_identity: str
    image_label: str
    image_digest: str
    image_png: bytes
    maps: Sequence[ReportMap]
    target_name: str
    target_index: Optional[int] = None
    layer: Optional[str] = None
    predictions: Sequence[tuple[int, str, float]] = ()
    device: str = ""
    colormap: str = ""
    opacity: Optional[float] = None
    shared_scale: Optional[bool] = None
    version: str = ""
    link: Optional[str] = None
    created: Optional[str] = None   # ISO time; now (UTC) when None
    title: str = "cnnviz — CAM comparison"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str, cls: str = "map") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _params_text(params: Mapping[str, Any]) -> str:
    if not params:
        return "no parameters"
    return ", ".join(f"{_e(k)} = {_e('all' if v is None and k == 'channels' else ('default' if v is None else v))}"
                     for k, v in params.items())


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#111827;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;
vertical-align:top} th{background:#f9fafb} code{font-size:12px;word-break:break-all}
.grid{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0;width:240px} img.map,img.input{width:240px;
image-rendering:pixelated;border:1px solid #e5e7eb} figcaption{font-size:12px;color:#374151;margin-top:4px}
figcaption b{font-size:13px;color:#111827} .muted{color:#6b7280;font-size:12px}
"""


def build_report(data: ReportData) -> str:
    """The report as one HTML document (UTF-8 text)."""
    created = data.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    sha = file_sha256(data.model_identity)
    audit = [
        ("Model", data.model_name),
        ("Weights", data.weights_label),
        ("Model identity", data.model_identity),
    ]
    if sha:
        audit.append(("Model file sha256", sha))
    audit += [
        ("Image", data.image_label),
        ("Image sha256", data.image_digest),
        ("Device", data.device or "—"),
        ("cnnviz version", data.version),
        ("Created (UTC)", created),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in audit)
    target = data.target_name + (f" (class {data.target_index})" if data.target_index is not None else "")
    settings = [("Class explained", target), ("Layer", data.layer or "— (input-gradient methods)")]
    if data.colormap:
        settings.append(("Colormap", data.colormap))
    if data.opacity is not None:
        settings.append(("Opacity", f"{data.opacity:g}"))
    if data.shared_scale is not None:
        settings.append(("Scaling", "one colour scale for the grid" if data.shared_scale
                         else "each map to its own range"))
    settings_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in settings)
    preds = "".join(f"<tr><td>{i + 1}</td><td>{_e(name)}</td><td>{_e(idx)}</td><td>{prob:.1%}</td></tr>"
                    for i, (idx, name, prob) in enumerate(data.predictions))
    figures = []
    metric_rows = []
    for m in data.maps:
        lines = [f"<b>{_e(m.method)}</b>", f"parameters: {_params_text(m.params)}"]
        if m.cost:
            lines.append(f"cost: {_e(m.cost)}")
        if m.deletion is not None and m.insertion is not None:
            lines.append(f"deletion AUC {m.deletion:.3f} · insertion AUC {m.insertion:.3f}")
        for name, value in m.metrics.items():
            lines.append(f"{_e(name)}: {value:.4g}")
        if m.seconds is not None:
            lines.append(f"computed in {m.seconds:.2f} s")
        lines += [_e(n) for n in m.notes]
        figures.append(f"<figure>{_img(m.png, m.method)}<figcaption>{'<br>'.join(lines)}</figcaption></figure>")
        metric_rows.append(
            f"<tr><td>{_e(m.method)}</td><td><code>{_e(m.key)}</code></td><td>{_params_text(m.params)}</td>"
            f"<td>{'—' if m.deletion is None else f'{m.deletion:.3f}'}</td>"
            f"<td>{'—' if m.insertion is None else f'{m.insertion:.3f}'}</td></tr>")
    link = (f'<p class="muted">View in cnnviz (needs the server): <code>{_e(data.link)}</code></p>'
            if data.link else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(data.title)}</h1>
<p class="muted">{_e(data.model_name)} explaining <b>{_e(target)}</b> on {_e(data.image_label)}.
Self-contained: every image is embedded, nothing is loaded from a network.</p>
{link}
<h2>Prediction</h2>
<table><tr><th>rank</th><th>class</th><th>index</th><th>probability</th></tr>{preds}</table>
<h2>Maps</h2>
<div class="grid">
<figure>{_img(data.image_png, "input image", "input")}<figcaption><b>Input</b><br>what the model sees
</figcaption></figure>
{''.join(figures)}
</div>
<h2>Settings</h2>
<table>{settings_rows}</table>
<h2>Metrics</h2>
<p class="muted">Deletion (lower is better) and insertion (higher is better) AUC, Petsiuk et al., RISE,
BMVC 2018; — = not computed.</p>
<table><tr><th>method</th><th>key</th><th>parameters</th><th>deletion AUC</th><th>insertion AUC</th></tr>
{''.join(metric_rows)}</table>
<h2>Audit trail</h2>
<table>{rows}</table>
</body></html>
"""


_NOTE_KEYS = ("approximation", "patch", "stride", "windows", "samples", "sigma", "steps", "baseline",
              "channels_used", "channels_total", "ablation")


def cam_report(handle, sel, view: np.ndarray, results: Mapping[str, Any], display_map, *,
               params: Mapping[str, Mapping[str, Any]], costs: Mapping[str, str],
               curves: Mapping[str, tuple], layer: Optional[str], predictions: Sequence[tuple[int, str, float]],
               colormap: str, opacity: float, shared_scale: bool, link: Optional[str] = None,
               metrics: Optional[Mapping[str, Mapping[str, float]]] = None) -> str:
    """The CAM page's comparison as a report: ``results`` ``{method key: MethodResult}`` (no errors),
    ``display_map(result) -> (H, W)``, ``curves`` ``{key: (deletion, insertion)}`` computed so far,
    ``metrics`` ``{key: {"metric name (direction)": value}}`` computed so far."""
    import cnnviz_core
    from cnnviz_core import plots
    from cnnviz_core.attribution import METHODS

    heats = {k: np.asarray(display_map(r), dtype=np.float64) for k, r in results.items()}
    zmin, zmax = plots.scale_range(list(heats.values())) if shared_scale and heats else (None, None)
    maps = []
    for k, r in results.items():
        rgb = plots.overlay(view, heats[k], colormap, opacity, zmin, zmax)
        c = curves.get(k)
        notes = [f"{n} = {r.info[n]}" for n in _NOTE_KEYS if n in r.info]
        maps.append(ReportMap(
            method=METHODS[k].display_name, key=k, png=png_bytes(rgb), params=dict(params.get(k, {})),
            cost=costs.get(k, METHODS[k].cost), seconds=None if r.cached else float(r.seconds),
            deletion=None if c is None else float(c[0].auc), insertion=None if c is None else float(c[1].auc),
            notes=notes, metrics=dict((metrics or {}).get(k, {}))))
    first = next(iter(results.values()), None)
    target_name = first.info.get("target_name", str(first.target)) if first is not None else "—"
    return build_report(ReportData(
        model_name=handle.name, weights_label=handle.weights_label, model_identity=handle.identity,
        image_label=sel.image_label, image_digest=sel.digest, image_png=png_bytes(view), maps=maps,
        target_name=target_name, target_index=None if first is None else int(first.target), layer=layer,
        predictions=[(int(i), str(n), float(p)) for i, n, p in predictions], device=str(handle.device),
        colormap=colormap, opacity=opacity, shared_scale=shared_scale, version=cnnviz_core.__version__,
        link=link))
