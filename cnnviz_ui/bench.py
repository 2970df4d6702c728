"""UI benchmark: Playwright (Debian's Chromium) against a real ``streamlit run dashboard.py``, with the
engine's own time for the same work as the floor. ``python -m cnnviz_ui.bench`` (``make bench-ui``).

What it times, as a visitor feels it:

- **first content**: the server answers its health check -> the first heading of the page is
  visible, and -> the page has finished its first run with its chart drawn (a cold server, per start);
- **CAM page, ResNet-50 (random weights)**: adding a method to the set (the choice of the typed-in
  method) -> the new grid is painted (one model pass: each repeat adds a method not computed
  before) and removing it again (no pass);
- **a change that needs no model pass** (opacity: one arrow key on the focused slider; colormap: the
  click on the new option of the opened, typed-in list) -> the grid is repainted and the run ended;
- **switching pages** with the same selection (CAM -> Backprop -> CAM) -> the page stopped changing;
  beside it, per switch, the seconds the browser's main thread was busy (Chrome's
  ``Performance.getMetrics``) and the server's CPU seconds, to tell which side the time went to.

Repeats of the different actions are interleaved; each figure is printed as median [min-max] over
the repeats. No timing is asserted anywhere: the figures are for the README and for reviews.

``--app-dir`` runs the same measurement against another checkout (e.g. ``git archive`` of an older
commit) to get before/after figures on one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from .local_server import CHROMIUM, CHROMIUM_ARGS, REPO, local_server, process_cpu_s

#: Methods added one per repeat (each needs its own model pass; none is in the default set).
EXTRA_METHODS = [("xgradcam", "XGrad-CAM"), ("hirescam", "HiResCAM"), ("saliency", "Saliency"),
                 ("deconvnet", "Deconvnet"), ("guided_backprop", "Guided backpropagation")]
TIMEOUT_MS = 240_000

# JS: a cheap signature of the painted grid (its images and panel titles).
_GRID_SIGNATURE = """() => {
  const chart = document.querySelector("[data-testid='stMain'] [data-testid='stPlotlyChart']");
  if (!chart) return "";
  const imgs = [...chart.querySelectorAll("image")].map(i => {
    const h = i.getAttribute("href") || i.getAttribute("xlink:href") || "";
    let x = 0; for (let k = 0; k < h.length; k += 61) x = (x * 31 + h.charCodeAt(k)) | 0;
    return h.length + ":" + x; });
  const titles = [...chart.querySelectorAll(".annotation-text")].map(t => t.textContent);
  return imgs.join("|") + "#" + titles.join("|");
}"""
_IDLE = ("() => { const app = document.querySelector(\"[data-testid='stApp']\");"
         " return app && app.getAttribute('data-test-script-state') === 'notRunning'"
         " && !document.querySelector(\"[data-testid='stSkeleton']\"); }")


def wait_idle(page, timeout: int = TIMEOUT_MS) -> None:
    page.wait_for_timeout(250)  # a rerun triggered by the last action has started
    page.wait_for_function(_IDLE, timeout=timeout, polling="raf")


def timed(page, action: Callable[[], None], *, changed: bool = True, timeout: int = 90_000) -> float:
    """Seconds from ``action()`` until the grid's signature changed (``changed``) and the run ended."""
    before = page.evaluate(_GRID_SIGNATURE)
    t0 = time.perf_counter()
    action()
    if changed:
        try:
            page.wait_for_function(f"(before) => ({_GRID_SIGNATURE})() !== before && ({_IDLE})()", arg=before,
                                   timeout=timeout, polling="raf")
        except Exception:  # noqa: BLE001 - a missed repaint is reported, the bench goes on
            page.screenshot(path=str(Path(tempfile.gettempdir()) / "cnnviz-uibench-timeout.png"), full_page=True)
            print(f"  (no repaint seen within {timeout / 1000:.0f} s; screenshot in {tempfile.gettempdir()})",
                  file=sys.stderr)
            return float("nan")
    else:
        page.wait_for_timeout(150)
        page.wait_for_function(_IDLE, timeout=timeout, polling="raf")
    return time.perf_counter() - t0


def _select(page, container, label: str, text: str) -> None:
    container.get_by_test_id("stSelectbox").filter(has_text=label).locator("input").click()
    page.keyboard.type(text)
    page.get_by_role("option").filter(has_text=text).first.click()


def _methods_box(page):
    return page.get_by_test_id("stMain").get_by_test_id("stMultiSelect").filter(has_text="Methods").first


def type_method(page, name: str) -> None:
    """Open the method list and type ``name`` (not timed: the change is the choice that follows)."""
    _methods_box(page).locator("input").click()
    page.keyboard.type(name)
    page.get_by_role("option").filter(has_text=name).first.wait_for(state="visible", timeout=TIMEOUT_MS)


def choose_typed_method(page) -> None:
    """Choose the filtered method (Enter) and close the list: the timed change of the method set."""
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def remove_method(page, name: str) -> None:
    """Remove ``name``, the last method of the set (just added): Backspace in the empty input."""
    _methods_box(page).locator("input").click()
    page.keyboard.press("Backspace")
    page.keyboard.press("Escape")


def nudge_opacity(page, key: str) -> None:
    slider = page.get_by_test_id("stMain").get_by_test_id("stSlider").filter(has_text="Opacity").first
    slider.get_by_role("slider").focus()
    page.keyboard.press(key)


def switch_page(page, title: str, path: str) -> float:
    link = page.get_by_test_id("stSidebar").get_by_role("link", name=title).first
    t0 = time.perf_counter()
    link.click()
    page.wait_for_url(f"**/{path}*", timeout=TIMEOUT_MS)
    # no fixed wait: the new page's own heading is drawn by its run, so "heading shown and the script
    # not running" means that run has finished
    page.wait_for_function(f"(title) => {{ const h = document.querySelector(\"[data-testid='stMain'] "
                           f"[data-testid='stHeading']\"); return h && h.textContent.includes(title) "
                           f"&& ({_IDLE})(); }}", arg=title, timeout=TIMEOUT_MS, polling="raf")
    page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart']").first.wait_for(state="visible",
                                                                                        timeout=TIMEOUT_MS)
    return time.perf_counter() - t0


def browser_busy_s(cdp) -> float:
    """Seconds the page's main thread has been busy so far (Chrome's ``Performance.getMetrics``)."""
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def engine_floors(repeats: int) -> dict[str, float]:
    """The engine's own time for the same work (median seconds, this process, ResNet-50 random)."""
    import numpy as np

    from cnnviz_core import load_model, plots, sample_image
    from cnnviz_core.attribution import explain_detailed

    handle = load_model("resnet50", weights=None)
    image = sample_image(next(iter(__import__("cnnviz_core").SAMPLES)))
    view = np.asarray(handle.crop(image), dtype=np.uint8)
    defaults = ["cam", "gradcam", "gradcam++", "layercam", "eigencam", "guided_gradcam"]
    explain_detailed(handle, image, ["gradcam"], None, None, cache=None)  # warm-up
    one, grids = [], []
    for i in range(repeats):
        m = EXTRA_METHODS[i % len(EXTRA_METHODS)][0]
        t0 = time.perf_counter()
        explain_detailed(handle, image, [m], None, None, cache=None)
        one.append(time.perf_counter() - t0)
    results = explain_detailed(handle, image, defaults, None, None, cache=None)
    maps = {k: plots.gradient_magnitude(r.raw) if r.family == "gradient" else r.raw for k, r in results.items()}
    for i in range(repeats):
        t0 = time.perf_counter()
        fig = plots.overlay_grid(view, maps, colormap="Jet", opacity=0.5 + 0.05 * (i % 2), shared_scale=False, cols=4)
        fig.to_json()
        grids.append(time.perf_counter() - t0)
    return {"one_method_pass": statistics.median(one), "grid_build": statistics.median(grids)}


def fmt(values: list[float]) -> str:
    seen = [v for v in values if v == v]
    missed = f", {len(values) - len(seen)} missed" if len(seen) < len(values) else ""
    if not seen:
        return "—" + missed
    return f"{statistics.median(seen):.2f} s [{min(seen):.2f}-{max(seen):.2f}, n={len(seen)}{missed}]"


def run(app_dir: Path, repeats: int, cold_starts: int, python: str = sys.executable) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {k: [] for k in (
        "first_heading", "first_page_done", "add_method_pass", "remove_method", "opacity", "colormap",
        "switch_to_backprop", "switch_back_to_cam", "switch_browser_busy", "switch_server_cpu")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for start in range(cold_starts):
                with local_server(app_dir, python=python) as server:
                    url, t_ready, pid = server.url, server.ready_at, server.pid
                    context = browser.new_context(viewport={"width": 1440, "height": 1000})
                    page = context.new_page()
                    cdp = context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    page.goto(f"{url}/cam")
                    page.locator("[data-testid='stMain'] [data-testid='stHeading']").first.wait_for(
                        state="visible", timeout=TIMEOUT_MS)
                    figures["first_heading"].append(time.perf_counter() - t_ready)
                    page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart']").first.wait_for(
                        state="visible", timeout=TIMEOUT_MS)
                    wait_idle(page)
                    figures["first_page_done"].append(time.perf_counter() - t_ready)
                    if start < cold_starts - 1:
                        context.close()
                        continue
                    sidebar = page.get_by_test_id("stSidebar")
                    _select(page, sidebar, "Model", "resnet50")
                    wait_idle(page)
                    box = sidebar.get_by_test_id("stCheckbox").filter(has_text="Random weights")
                    if not box.locator("input").is_checked():
                        box.locator("label").first.click()
                    page.locator("[data-testid='stMain'] [data-testid='stPlotlyChart']").first.wait_for(
                        state="visible", timeout=TIMEOUT_MS)
                    wait_idle(page)
                    cmaps = ["Inferno", "Jet"]
                    for i in range(repeats):  # interleaved: every action once per round
                        key, name = EXTRA_METHODS[i % len(EXTRA_METHODS)]
                        type_method(page, name)
                        figures["add_method_pass"].append(timed(page, lambda: choose_typed_method(page)))
                        figures["remove_method"].append(timed(page, lambda: remove_method(page, name)))
                        figures["opacity"].append(timed(page, lambda: nudge_opacity(
                            page, "ArrowRight" if i % 2 == 0 else "ArrowLeft")))
                        main = page.get_by_test_id("stMain")
                        shown = main.get_by_test_id("stSelectbox").filter(has_text="Colormap").inner_text()
                        other = cmaps[0] if shown.strip().splitlines()[-1].strip() != cmaps[0] else cmaps[1]
                        box = main.get_by_test_id("stSelectbox").filter(has_text="Colormap")
                        box.locator("input").click()  # open and type first: the timed part is the choice
                        page.keyboard.type(other)
                        option = page.get_by_role("option").filter(has_text=other).first
                        figures["colormap"].append(timed(page, option.click))
                        busy, cpu = browser_busy_s(cdp), process_cpu_s(pid)
                        figures["switch_to_backprop"].append(switch_page(page, "Backprop to image", "backprop"))
                        figures["switch_back_to_cam"].append(switch_page(page, "CAM & Grad-CAM", "cam"))
                        # where the two switches' time went: the browser's main thread, the server's CPU
                        figures["switch_browser_busy"].append((browser_busy_s(cdp) - busy) / 2)
                        figures["switch_server_cpu"].append((process_cpu_s(pid) - cpu) / 2)
                        wait_idle(page)
                    context.close()
        finally:
            browser.close()
    return figures


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnviz_ui.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the interleaved actions (default 5)")
    parser.add_argument("--cold-starts", type=int, default=1, help="server starts for the first-content figure")
    parser.add_argument("--app-dir", type=Path, default=REPO, help="checkout to serve (default: this one)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs streamlit")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--no-floor", action="store_true", help="skip the engine floor measurement")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"the UI bench needs {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    os.environ.setdefault("CNNVIZ_OFFLINE", "1")
    figures = run(args.app_dir.resolve(), args.repeats, args.cold_starts, args.python)
    floors = {} if args.no_floor else engine_floors(args.repeats)
    rows = [
        ("server answering -> first heading visible", "first_heading", None),
        ("server answering -> first page run done, chart drawn", "first_page_done", None),
        ("CAM, ResNet-50: add a method (one model pass) -> new grid", "add_method_pass", "one_method_pass"),
        ("CAM, ResNet-50: remove a method (cached) -> new grid", "remove_method", None),
        ("CAM, ResNet-50: opacity (no model pass) -> repainted", "opacity", "grid_build"),
        ("CAM, ResNet-50: colormap (no model pass) -> repainted", "colormap", "grid_build"),
        ("switch CAM -> Backprop (same selection) -> settled", "switch_to_backprop", None),
        ("switch Backprop -> CAM (same selection) -> settled", "switch_back_to_cam", None),
        ("  a switch, of it: the browser's main thread busy", "switch_browser_busy", None),
        ("  a switch, of it: the server's CPU (its other core)", "switch_server_cpu", None),
    ]
    print(f"cnnviz UI bench: {args.app_dir.resolve()}, Chromium, {args.repeats} interleaved rounds, "
          f"{args.cold_starts} cold start(s); median [min-max]")
    for label, key, floor in rows:
        extra = f"   engine floor {floors[floor]:.2f} s" if floor and floor in floors else ""
        print(f"  {label:<62} {fmt(figures[key])}{extra}")
    if args.json:
        print(json.dumps({"figures": figures, "floors": floors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
