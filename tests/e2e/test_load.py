"""Load and faults against one real ``streamlit run`` server on localhost (issue 15, "Safe to share").

**Load** (:func:`test_eight_sessions_at_once`): one server with a model budget
(``CNNVIZ_MODEL_CACHE_MB`` = :data:`BUDGET_MB`) and random weights for the ImageNet model offline.

1. *Short request, alone and beside a long job.* Session M (ResNet-18) changes the CAM page's layer
   (a fresh Grad-CAM + LayerCAM, new grid painted) :data:`REPEATS` times alone, then the same changes
   on another image while session L runs a long job (exact Score-CAM + SmoothGrad + Integrated
   Gradients through the job pool); one untimed request first in each phase. The medians must stay
   within 2x. L's browser is then closed
   mid-job: its job must stop.
2. *Eight sessions at once* (one Chromium, eight contexts, asyncio): each on its own image (seven
   gallery samples and one uploaded generated PNG), shapes-cnn and ResNet-18 alternately, each visits
   the CAM page and the Backprop page and downloads the maps (NumPy .npz); session 0 first runs a Deep
   Dream (a long job) to completion. Every downloaded map must equal the one computed in this test
   process on the same model, image, method and layer (serial, nothing else running).
3. *Memory*: the server's peak resident memory (``VmHWM`` of ``/proc/<pid>/status``, the kernel's own
   high-water mark) must stay within *baseline + budget + one model + a working allowance*; the
   baseline is ``VmRSS`` after a warm-up visit (Streamlit, torch, the engine and shapes-cnn loaded),
   measured before the load.
4. *Nothing left running*: after every context is closed, the server's CPU use over a few seconds is
   near zero, its thread count is back to the warm-up baseline (plus Streamlit's idle pools, at most
   :data:`IDLE_THREADS_SLACK`), and a fresh visitor's *Server details* say 0 long jobs running or waiting.

**Faults** (:func:`test_out_of_memory_during_a_long_job`): the server process runs out of memory during a
long job (its address-space limit is lowered from outside with ``prlimit`` while a Deep Dream runs,
the way an operator's ``ulimit -v`` or a full machine would make allocations fail): the job is marked
failed with one error line, the server keeps serving, and the next long jobs (the same visitor's and
another's) run to completion. That last point needs a fresh worker thread: after an allocation failure
oneDNN fails every later convolution of the thread that hit it, so the pool replaces a worker whose job
failed unexpectedly (``cnnviz_core.jobs``). (A worker *thread* that dies is simulated in
``tests/test_jobs.py``; a Python thread cannot be killed from outside the process.)

Downloads: a click whose download fails is retried, listed and printed (see :func:`download`: on a busy
server Streamlit 1.67 can delete a deferred download's file before the browser fetches it).

The figures are printed (``pytest -s``) to be quoted.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

from cnnviz_ui.local_server import LocalServer, ServerDidNotStart, local_server, stat_cpu_s

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUDGET_MB = 128  # shapes-cnn (1.6 MB) + ResNet-18 random (44.6 MB, about 90 MB with its folded twin)
SESSIONS = 8
#: Working memory beside the models, per session in flight (the eight and the long job): a ResNet-18
#: backward pass at 224 px keeps about 35 MB of activations and gradients in its thread's allocator
#: arena (measured in-process), plus the session's Plotly figures, downloads and cached results.
WORKING_MB_PER_SESSION = 64
WORKING_MB = WORKING_MB_PER_SESSION * (SESSIONS + 1)
REPEATS = 5
#: Idle threads that may stay: asyncio's default executor, where Streamlit builds deferred downloads,
#: keeps up to min(32, cores + 4) threads; torch's inter-op pool, one per core. (anyio's worker threads,
#: where the web server runs blocking handlers, end after 10 s idle: :data:`GRACE_S` waits for them.)
IDLE_THREADS_SLACK = min(32, (os.cpu_count() or 1) + 4) + (os.cpu_count() or 1)
GRACE_S = 25
RUN_MS = 150_000
NOT_RUNNING = "[data-testid='stApp'][data-test-script-state='notRunning']"
MAIN_CHART = "[data-testid='stMain'] [data-testid='stPlotlyChart']"
NO_SKELETON = "() => !document.querySelector(\"[data-testid='stSkeleton']\")"
CAM_METHODS = ("gradcam", "layercam")
BP_METHODS = ("saliency", "deconvnet", "guided_backprop")
TIMED_LAYERS = ("layer1.1.conv2", "layer2.0.conv1", "layer2.1.conv2", "layer3.0.conv1", "layer3.1.conv1")[:REPEATS]
WARM_LAYER = "layer2.1.conv1"
M_IMAGES = ("Scene: tagged corner (seed 5)", "Photo: rocket")  # ResNet-18; the load uses shapes-cnn on them
#: The long job beside the timed requests: about 35 s alone on one core.
LONG_JOB_QUERY = ("methods=scorecam,smoothgrad,integrated_gradients&sc=exact&sg_n=100&ig_steps=128"
                  "&model=resnet18&random=1&sample=photo-coffee")
STARTED_OR_DONE = """
() => document.querySelector("[data-testid='stApp'][data-test-script-state='running']")
  || [...document.querySelectorAll("[data-testid='stProgress']")].some(e => e.innerText.includes("Done"))
"""
DONE_AT_LAYER = """
(layer) => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.getAttribute("data-test-script-state") !== "notRunning") return false;
  if (document.querySelector("[data-testid='stSkeleton']")) return false;
  const main = document.querySelector("[data-testid='stMain']");
  const said = [...main.querySelectorAll("[data-testid='stMarkdownContainer']")]
    .some(e => e.innerText.includes("Explaining") && e.innerText.includes("at layer " + layer + "."));
  return said && !!main.querySelector("[data-testid='stPlotlyChart'] .main-svg");
}
"""


# ---- the server and its process ----------------------------------------------------------------------
@dataclass
class Server(LocalServer):
    """The dashboard's process, with what the load tests read of it."""

    def status(self) -> dict[str, int]:
        """``VmRSS``, ``VmHWM``, ``VmSize`` (kB) and ``Threads`` of the server process."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def thread_names(self) -> dict[str, int]:
        """How many threads of the server process have each name (``/proc/<pid>/task/*/comm``)."""
        names: dict[str, int] = {}
        for comm in Path(f"/proc/{self.pid}/task").glob("*/comm"):
            with contextlib.suppress(OSError):
                name = comm.read_text().strip()
                names[name] = names.get(name, 0) + 1
        return dict(sorted(names.items()))

    def thread_cpu_s(self) -> dict[str, float]:
        """CPU seconds of each thread of the server process, by thread id."""
        out = {}
        for stat in Path(f"/proc/{self.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                out[stat.parent.name] = stat_cpu_s(stat)
        return out

    def idle_window(self, seconds: float) -> tuple[float, int]:
        """Over ``seconds`` of wall time: the server's CPU share (1.0 = one core busy) and how many of its
        threads used more than 2 % of a core."""
        before, threads, started = self.cpu_s(), self.thread_cpu_s(), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - started
        busy = sum(1 for tid, cpu in self.thread_cpu_s().items() if cpu - threads.get(tid, 0.0) > 0.02 * wall)
        return (self.cpu_s() - before) / wall, busy


@contextlib.contextmanager
def serve(**env_extra: str):
    """The dashboard on a free localhost port (:func:`cnnviz_ui.local_server.local_server`) with random
    weights for our models and ``env_extra`` in its environment; yields a :class:`Server` once it answers."""
    try:
        with local_server(env=dict(CNNVIZ_DEV_RANDOM="1", **env_extra)) as running:
            try:
                yield Server(running.url, running.proc, running.log, running.ready_at)
            finally:
                with contextlib.suppress(OSError):  # undo any limit a test set
                    resource.prlimit(running.pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except ServerDidNotStart as e:
        pytest.fail(str(e))


class Sampler:
    """Samples the server's resident memory every 0.2 s in a thread (beside the kernel's VmHWM)."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak_kb, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError):
                self.peak_kb = max(self.peak_kb, self.server.status()["VmRSS"])

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


# ---- browser helpers (async API: one Chromium, many contexts) ------------------------------------------
async def settle(page, timeout: int = RUN_MS) -> None:
    """The script run finished and no skeleton is left (after a short delay for the rerun to start)."""
    await page.wait_for_timeout(400)
    await page.wait_for_selector(NOT_RUNNING, timeout=timeout)
    await page.wait_for_function(NO_SKELETON, timeout=timeout)
    await page.wait_for_timeout(200)


async def errors_on(page) -> list[str]:
    out = []
    for test_id in ("stException", "stAlertContentError"):
        boxes = page.locator(f"[data-testid='{test_id}']")
        out += [await boxes.nth(i).inner_text() for i in range(await boxes.count())]
    return out


async def download(page, label: str, got: "Got", where: str) -> bytes:
    """The file behind the main area's download button ``label``. A click is retried (at most twice,
    listed in ``got.retries``) when its download fails, as it can on a busy server: Streamlit 1.67 makes
    a deferred download's file on the click but references it from no session, so the end of any two
    script runs on the server (any session's) before the browser fetches it deletes it (the download
    is "canceled"); and a click that reaches a button a new run is replacing gets "Deferred file ...
    not found" (no download)."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    button = page.get_by_test_id("stMain").get_by_test_id("stDownloadButton").filter(has_text=label).first
    for attempt in range(3):
        try:
            async with page.expect_download(timeout=30_000 if attempt < 2 else RUN_MS) as info:
                await button.click()
            return Path(await (await info.value).path()).read_bytes()
        except PlaywrightTimeout:
            reason = "no download"
        except PlaywrightError as exc:
            if "canceled" not in str(exc):
                raise
            reason = "canceled"
        if attempt == 2:
            raise AssertionError(f"{where}: {label} failed three times ({reason})")
        got.retries.append(f"{where} ({reason})")
        await settle(page)
    raise AssertionError("unreachable")


async def choose(page, where: str, label: str, value: str) -> None:
    """Type ``value`` into the selectbox labelled ``label`` in ``where`` (stMain / stSidebar) and pick it."""
    box = page.get_by_test_id(where).get_by_test_id("stSelectbox").filter(has_text=label).first
    await box.locator("input").click()
    await page.keyboard.type(value)
    await page.keyboard.press("Enter")
    await page.keyboard.press("Escape")


async def timed_layer(page, layer: str) -> float:
    """Seconds from picking ``layer`` on the CAM page to its new grid on screen (fresh maps: the layer
    was never computed for this image)."""
    box = page.get_by_test_id("stMain").get_by_test_id("stSelectbox").filter(has_text="Layer").first
    await box.locator("input").click()
    await page.keyboard.type(layer)
    started = time.perf_counter()
    await page.keyboard.press("Enter")
    await page.wait_for_function(DONE_AT_LAYER, arg=layer, timeout=RUN_MS, polling=50)
    took = time.perf_counter() - started
    await page.keyboard.press("Escape")
    return took


def slug(name: str) -> str:
    from cnnviz_ui.share import slug as share_slug

    return share_slug(name)


def cam_url(server: Server, model: str, sample: Optional[str], methods=CAM_METHODS) -> str:
    random = "1" if model == "resnet18" else "0"
    image = f"sample={slug(sample)}" if sample else "image=upload"
    return f"{server.url}/cam?model={model}&random={random}&{image}&methods={','.join(methods)}"


# ---- what each session should get: computed here, serially --------------------------------------------
@dataclass
class Spec:
    index: int
    model: str
    sample: Optional[str]  # a gallery sample, or None: the uploaded PNG
    long_job: bool = False


@dataclass
class Got:
    spec: Spec
    cam: dict = field(default_factory=dict)
    backprop: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    waits_seen: int = 0
    retries: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def generated_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (200, 150), (235, 238, 240))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 120, 110), fill=(30, 90, 200))
    draw.rectangle((110, 70, 180, 130), fill=(210, 60, 40))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def load_specs() -> list[Spec]:
    from cnnviz_core import SAMPLES

    samples = list(SAMPLES)  # seven: with the upload, eight images
    specs = [Spec(i, "shapes-cnn" if i % 2 == 0 else "resnet18", samples[i] if i < len(samples) else None)
             for i in range(SESSIONS)]
    specs[0].long_job = True
    return specs


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """``{(model, image key): {"cam": {...}, "backprop": {...}, "image": view}}`` computed in this
    process (nothing else running), with the server's own code path and arguments."""
    from cnnviz_core import Engine, load_image, sample_image
    from cnnviz_core.attribution import explain_detailed

    engine, out = Engine(), {}
    upload = generated_png()
    for spec in load_specs():
        handle = engine.model(spec.model, "default" if spec.model == "shapes-cnn" else None)
        image = sample_image(spec.sample) if spec.sample else load_image(upload, max_side=1024)
        cam = explain_detailed(handle, image, list(CAM_METHODS), None, handle.default_layer, on_error="collect")
        bp = explain_detailed(handle, image, list(BP_METHODS), None, None, on_error="collect")
        out[spec.index] = {"view": np.asarray(handle.crop(image), dtype=np.uint8),
                           "cam": {k: r.raw for k, r in cam.items() if r.error is None},
                           "backprop": {k: r.raw for k, r in bp.items() if r.error is None},
                           "model_mb": handle.nbytes() / 2**20}
    path = tmp_path_factory.mktemp("load") / "generated.png"
    path.write_bytes(upload)
    return out, path


# ---- the session scripts -------------------------------------------------------------------------------
async def run_session(browser, server: Server, spec: Spec, upload: Path) -> Got:
    got = Got(spec)
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await ctx.new_page()
        started = time.perf_counter()
        if spec.long_job:  # Deep Dream through the job pool, to the end
            await page.goto(f"{server.url}/deep-dream?model={spec.model}&sample={slug(spec.sample)}")
            await settle(page)
            await page.get_by_role("button", name="Dream").click()
            deadline = time.monotonic() + RUN_MS / 1000
            progress = page.get_by_test_id("stProgress")
            while time.monotonic() < deadline:
                text = " ".join(await progress.all_inner_texts())
                if "ahead of you" in text:
                    got.waits_seen += 1
                if "Done" in text:
                    break
                await page.wait_for_timeout(250)
            await settle(page)
            assert await page.get_by_text("Done").count() >= 1, "the Deep Dream did not finish"
            got.seconds["deep dream"] = time.perf_counter() - started
            got.errors += await errors_on(page)
            started = time.perf_counter()
        await page.goto(cam_url(server, spec.model, spec.sample))
        await settle(page)
        if spec.sample is None:  # wait for the run that shows the upload, not the one before it
            await page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
            await page.get_by_test_id("stSidebar").get_by_text(f"{upload.name} · ").first.wait_for(timeout=RUN_MS)
            await settle(page)
        await page.locator(MAIN_CHART).first.wait_for(timeout=RUN_MS)
        got.seconds["cam"] = time.perf_counter() - started
        got.errors += await errors_on(page)
        got.cam = dict(np.load(io.BytesIO(await download(page, "Maps (NumPy .npz)", got, "cam"))))
        started = time.perf_counter()
        await page.locator(".st-key-cnnviz_menu").get_by_text("Backprop to image", exact=True).click()
        await page.wait_for_url(re.compile(r"/backprop"), timeout=RUN_MS)  # the new page's run, not the old
        await page.get_by_test_id("stMain").get_by_text("Which pixels would change").first.wait_for(timeout=RUN_MS)
        await settle(page)
        await page.locator(MAIN_CHART).first.wait_for(timeout=RUN_MS)
        got.seconds["backprop"] = time.perf_counter() - started
        got.errors += await errors_on(page)
        got.backprop = dict(np.load(io.BytesIO(await download(page, "Maps (NumPy .npz)", got, "backprop"))))
    finally:
        await ctx.close()
    return got


async def server_details(browser, server: Server) -> str:
    """What a fresh visitor's sidebar *Server details* say (the shared model cache, the job pool)."""
    ctx = await browser.new_context()
    try:
        page = await ctx.new_page()
        await page.goto(f"{server.url}/basics")
        await settle(page)
        sidebar = page.get_by_test_id("stSidebar")
        await sidebar.get_by_text("Server details").click()
        await page.wait_for_timeout(300)
        return await sidebar.get_by_test_id("stExpander").filter(has_text="Server details").inner_text()
    finally:
        await ctx.close()


async def short_requests(browser, server: Server, report: dict) -> None:
    """Phase 1: layer changes alone, then beside a long job; then the long job's browser goes away."""
    m_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    l_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        m = await m_ctx.new_page()
        await m.goto(cam_url(server, "resnet18", M_IMAGES[0]))
        await settle(m)
        await timed_layer(m, WARM_LAYER)  # first-use costs of the page, untimed
        alone = [await timed_layer(m, layer) for layer in TIMED_LAYERS]

        long_page = await l_ctx.new_page()
        await long_page.goto(f"{server.url}/cam?{LONG_JOB_QUERY}")
        await settle(long_page)
        await long_page.get_by_role("button", name=re.compile("Compute slow methods")).click()
        running = long_page.get_by_test_id("stProgress").filter(has_text=re.compile(r"step \d+/"))
        await running.first.wait_for(timeout=RUN_MS)
        await choose(m, "stSidebar", "Sample", M_IMAGES[1])
        await m.wait_for_function(DONE_AT_LAYER, arg=TIMED_LAYERS[-1], timeout=RUN_MS, polling=50)
        await timed_layer(m, WARM_LAYER)  # untimed, as alone
        with_job = [await timed_layer(m, layer) for layer in TIMED_LAYERS]
        text = await running.first.inner_text()
        step, total = map(int, re.search(r"step (\d+)/(\d+)", text).groups())
        assert step < total, f"the long job ended before the last timed request ({text}): make it longer"
        report.update(alone=alone, with_job=with_job, long_job_at=f"{step}/{total}")
        assert not await errors_on(m)
        await l_ctx.close()  # mid-job: the session ends, its job must stop
        closed = time.monotonic()
        while "Long jobs: 0 running, 0 waiting" not in (details := await server_details(browser, server)):
            assert time.monotonic() - closed < 20, f"the long job still runs 20 s after its browser closed: {details}"
        report["stopped_after_s"] = time.monotonic() - closed
    finally:
        await l_ctx.close()
        await m_ctx.close()


def assert_same_maps(got: dict, want: dict, what: str) -> float:
    """Every expected method's map came back, equal up to float noise; returns the largest difference."""
    worst = 0.0
    assert set(want) <= set(got), f"{what}: downloaded {sorted(got)}, expected {sorted(want)}"
    for key, ref in want.items():
        arr = got[key]
        assert arr.shape == ref.shape, f"{what}/{key}: shape {arr.shape} != {ref.shape}"
        scale = max(float(np.abs(ref).max()), 1e-12)
        diff = float(np.abs(arr.astype(np.float64) - ref).max()) / scale
        assert diff <= 1e-4, f"{what}/{key}: differs from the serial result by {diff:.2e} of its range"
        worst = max(worst, diff)
    return worst


@pytest.mark.timeout(240)
def test_eight_sessions_at_once(expected):
    _require_browser()
    from playwright.async_api import async_playwright

    want, upload = expected
    specs = load_specs()
    report: dict = {}

    async def main(server: Server) -> list[Got]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                warm = await browser.new_context()
                page = await warm.new_page()
                await page.goto(cam_url(server, "shapes-cnn", None))
                await settle(page)
                await warm.close()
                await asyncio.sleep(3)
                report["baseline"] = server.status()
                report["baseline_threads"] = server.thread_names()
                await short_requests(browser, server, report)
                started = time.perf_counter()
                results = await asyncio.wait_for(
                    asyncio.gather(*(run_session(browser, server, s, upload) for s in specs)), timeout=200)
                report["load_s"] = time.perf_counter() - started
                await asyncio.sleep(5)  # grace: closed sessions end, a stopped job notices
                report["details"] = await server_details(browser, server)
                return results
            finally:
                await browser.close()

    with serve(CNNVIZ_MODEL_CACHE_MB=str(BUDGET_MB)) as server:
        with Sampler(server) as sampler:
            results = asyncio.run(main(server))
        closed = time.monotonic()  # idle threads of the web server's pools end after 10 s
        limit = report["baseline"]["Threads"] + IDLE_THREADS_SLACK
        time.sleep(2)
        while server.status()["Threads"] > limit and time.monotonic() - closed < GRACE_S:
            time.sleep(1)
        report["grace_s"] = time.monotonic() - closed
        idle_cpu, busy_threads = server.idle_window(4.0)
        after = server.status()
        after_threads = server.thread_names()
        log = server.log_tail()
        log_text = server.log.read_text(errors="replace")

    base = report["baseline"]
    # One model, as the engine weighs it (twin included): the largest in the server's details.
    listed = [float(mb) for mb in re.findall(r"· \S+ — (\d+(?:\.\d+)?) MB", report["details"])]
    model_mb = max(listed + [w["model_mb"] for w in want.values()])
    peak_mb, base_mb = after["VmHWM"] / 1024, base["VmRSS"] / 1024
    models_mb = float(re.search(r"Shared models: (\d+)", report["details"]).group(1))
    alone, with_job = statistics.median(report["alone"]), statistics.median(report["with_job"])
    worst = 0.0
    for got in results:
        ref = want[got.spec.index]
        name = f"session {got.spec.index} ({got.spec.model}, {got.spec.sample or 'upload'})"
        assert not got.errors, f"{name}: {got.errors}"
        assert np.array_equal(got.cam["image"], ref["view"]), f"{name}: the CAM maps are of another image"
        worst = max(worst, assert_same_maps(got.cam, ref["cam"], f"{name} CAM"),
                    assert_same_maps(got.backprop, ref["backprop"], f"{name} Backprop"))
    print("\n---- load figures ----")
    print(f"sessions: {len(results)} at once (+2 for the timing phase), models shapes-cnn and resnet18 (random), "
          f"{len(results)} images; load phase {report['load_s']:.1f} s wall")
    for got in results:
        times = ", ".join(f"{k} {v:.1f} s" for k, v in got.seconds.items())
        print(f"  session {got.spec.index} {got.spec.model:10s} {got.spec.sample or 'uploaded PNG':32s} {times}")
    print(f"maps: all {len(results) * (len(CAM_METHODS) + len(BP_METHODS))} equal the serial results "
          f"(largest difference {worst:.1e} of a map's range)")
    print(f"short request (CAM layer change, ResNet-18, median of {REPEATS}): alone {alone:.2f} s "
          f"{['%.2f' % t for t in report['alone']]}, beside the long job {with_job:.2f} s "
          f"{['%.2f' % t for t in report['with_job']]} = {with_job / alone:.2f}x (long job at step "
          f"{report['long_job_at']} when the last one finished; it stopped {report['stopped_after_s']:.1f} s after "
          "its browser closed)")
    retried = {f"session {g.spec.index}": ", ".join(g.retries) for g in results if g.retries}
    print(f"downloads retried: {retried or 'none'}; Streamlit 'Deferred file ... not found' in the server log: "
          f"{log_text.count('Error executing deferred callable')}")
    print(f"waits seen: {sum(g.waits_seen for g in results)} 'jobs ahead of you' polls (one long job at a time)")
    print(f"memory: baseline {base_mb:.0f} MB (VmRSS after a warm-up visit), peak {peak_mb:.0f} MB (VmHWM; sampled "
          f"{sampler.peak_kb / 1024:.0f} MB), bound {base_mb:.0f} + budget {BUDGET_MB} + one model {model_mb:.0f} "
          f"+ working {WORKING_MB} = {base_mb + BUDGET_MB + model_mb + WORKING_MB:.0f} MB; beside the models "
          f"({models_mb:.0f} MB loaded) the sessions took {peak_mb - base_mb - models_mb:.0f} MB at the peak")
    print(f"after closing (+{report['grace_s']:.0f} s): CPU {idle_cpu:.1%} of a core, {busy_threads} thread(s) busy, "
          f"threads {after['Threads']} {after_threads} (baseline {base['Threads']} {report['baseline_threads']}, "
          f"idle pools may add {IDLE_THREADS_SLACK})")
    print("server details: " + " | ".join(report["details"].splitlines()))
    assert with_job <= 2 * alone, f"short requests beside a long job took {with_job:.2f} s vs {alone:.2f} s alone"
    assert peak_mb <= base_mb + BUDGET_MB + model_mb + WORKING_MB, f"peak {peak_mb:.0f} MB"
    shared = re.search(r"Shared models: (\d+) of (\d+) MB", report["details"])
    assert shared and int(shared.group(1)) <= BUDGET_MB + model_mb, report["details"]
    assert "Long jobs: 0 running, 0 waiting" in report["details"], report["details"]
    assert idle_cpu < 0.05 and busy_threads == 0, \
        f"the server still works after every session closed: {idle_cpu:.0%} of a core, {busy_threads} threads\n{log}"
    assert after["Threads"] <= base["Threads"] + IDLE_THREADS_SLACK, (after["Threads"], base["Threads"])


# ---- faults ----------------------------------------------------------------------------------------------
#: Address space the server may map beyond what it has mapped when the limit is set (during the first
#: octave): none, as on a full machine. The Deep Dream's next octave needs more (its activations and
#: gradients grow with the octave's pixels), and fails within seconds; 16 MB was not always too little.
OOM_MARGIN_MB = 0


async def slider_to(page, label: str, key: str) -> None:
    """Press ``key`` (Home / End) on the main area's slider labelled ``label``."""
    slider = page.get_by_test_id("stMain").get_by_test_id("stSlider").filter(has_text=label).first
    await slider.get_by_role("slider").focus()
    await page.keyboard.press(key)
    await page.wait_for_timeout(1200)
    await settle(page)


async def dream_to_the_end(page, timeout_ms: int = RUN_MS) -> str:
    """Click Dream and wait for the job's end (the page's script run follows the job); the progress
    text left on the page ("Done" after a success; a failure empties the bar)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    await page.get_by_role("button", name="Dream").click()
    with contextlib.suppress(PlaywrightTimeout):  # the run started (or a short job already ended)
        await page.wait_for_function(STARTED_OR_DONE, timeout=10_000)
    await settle(page, timeout=timeout_ms)
    return " ".join(await page.get_by_test_id("stProgress").all_inner_texts())


@pytest.mark.timeout(240)
def test_out_of_memory_during_a_long_job():
    """The server runs out of memory during a long job: one error line, the job failed and the worker
    still there, other visitors served, and the next long jobs (the same visitor's, another's) run."""
    _require_browser()
    from playwright.async_api import async_playwright

    report: dict = {}

    async def main(server: Server) -> None:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                victim_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
                victim = await victim_ctx.new_page()
                await victim.goto(f"{server.url}/deep-dream?model=resnet18&random=1&sample=photo-astronaut")
                await settle(victim)
                await slider_to(victim, "Image size", "End")  # 512 px: octaves of 261, 366 and 512 px
                await slider_to(victim, "Steps per octave", "End")  # 40 steps each
                await victim.get_by_role("button", name="Dream").click()
                running = victim.get_by_test_id("stProgress").filter(has_text=re.compile(r"step \d+/"))
                await running.first.wait_for(timeout=RUN_MS)
                report["at"] = re.search(r"step \d+/\d+", await running.first.inner_text()).group(0)
                size_kb = server.status()["VmSize"]
                limit = (size_kb + OOM_MARGIN_MB * 1024) * 1024
                resource.prlimit(server.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
                try:
                    error = victim.locator("[data-testid='stAlertContentError']")
                    await error.first.wait_for(timeout=90_000)
                finally:
                    resource.prlimit(server.pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                report["limit_mb"] = limit / 2**20
                await settle(victim)
                report["errors"] = [await error.nth(i).locator("[data-testid='stMarkdownContainer']").inner_text()
                                    for i in range(await error.count())]
                report["exceptions"] = await victim.locator("[data-testid='stException']").count()
                report["progress_left"] = await victim.get_by_test_id("stProgress").count()

                other_ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
                other = await other_ctx.new_page()
                await other.goto(cam_url(server, "shapes-cnn", "Photo: coffee"))
                await settle(other)
                await other.locator(MAIN_CHART).first.wait_for(timeout=RUN_MS)
                report["other_cam_errors"] = await errors_on(other)
                report["details"] = await server_details(browser, server)

                # The same visitor's next job (a failed job must not count as still running), then another's.
                await slider_to(victim, "Image size", "Home")
                await slider_to(victim, "Steps per octave", "Home")
                report["victim_next"] = await dream_to_the_end(victim)
                report["victim_next_errors"] = await errors_on(victim)
                await other.goto(f"{server.url}/deep-dream?model=shapes-cnn&sample=photo-coffee")
                await settle(other)
                report["other_next"] = await dream_to_the_end(other)
                report["other_next_errors"] = await errors_on(other)
                await victim_ctx.close()
                await other_ctx.close()
            finally:
                await browser.close()

    with serve(CNNVIZ_MODEL_CACHE_MB=str(BUDGET_MB)) as server:
        asyncio.run(main(server))
        assert server.proc.poll() is None, "the server died"
        log = server.log_tail()
    print("\n---- fault figures ----")
    print(f"address-space limit {report['limit_mb']:.0f} MB set at {report['at']} of the Deep Dream")
    print(f"the victim saw: {report['errors']}")
    print("server details: " + " | ".join(report["details"].splitlines()))
    print(f"next jobs: the victim's {report['victim_next']!r}, another visitor's {report['other_next']!r}")
    assert len(report["errors"]) == 1 and "\n" not in report["errors"][0].strip(), (report["errors"], log)
    assert "ran out of memory" in report["errors"][0], report["errors"]
    assert report["exceptions"] == 0 and report["progress_left"] == 0
    assert not report["other_cam_errors"], report["other_cam_errors"]
    assert "Long jobs: 0 running, 0 waiting" in report["details"], report["details"]
    assert "Done" in report["victim_next"] and not report["victim_next_errors"], report
    assert "Done" in report["other_next"] and not report["other_next_errors"], report
