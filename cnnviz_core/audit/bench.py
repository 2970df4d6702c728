"""Audit throughput figures: ``python -m cnnviz_core.audit.bench [--images N] [--json OUT]``.

Prints, on generated scenes (``shapes-cnn``; the trained weights when present, else random):

1. batched attribution (:func:`.batched.explain_batch`) vs one image at a time
   (:func:`cnnviz_core.attribution.explain`, cache off), for shapes-cnn and ResNet-50 (random);
2. attribution cost vs number of methods (the shared pass is paid once per batch);
3. audit cost (metrics included) vs number of images, and vs number of methods;
4. audit throughput (images/s, metrics included) in-process and on a local Ray instance with 1, 2
   and 4 workers (Ray start-up excluded, actor start-up and model loading included);
5. the same for ResNet-50 with random weights (fewer images).

Every figure depends on the machine: the printout names the CPU count and torch threads.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any, Callable, Optional

import torch
from PIL import Image

from ..attribution import explain
from ..models import load_model
from ..scenes import generate_scene, write_scenes
from .batched import explain_batch
from .runner import LOCAL_RAY, run_audit
from .sources import list_images
from .worker import AuditConfig

METRICS = ("deletion", "insertion", "pointing")


def _best(fn: Callable[[], Any], repeat: int = 2) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _weights(model: str) -> Optional[str]:
    try:
        load_model(model)
        return "default"
    except Exception:  # noqa: BLE001 - trained weights missing: random init
        return None


def batched_vs_single(model: str, weights: Optional[str], n: int, methods: tuple[str, ...]) -> dict[str, Any]:
    handle = load_model(model, weights, "cpu")
    images = [Image.fromarray(generate_scene(1, i, size=max(128, handle.spec.input_size)).image) for i in range(n)]
    x = torch.cat([handle.preprocess(im) for im in images])
    explain_batch(handle, x, methods)  # warm-up at both batch shapes (oneDNN primitives per shape)
    explain(handle, x[:1], methods, cache=None)
    batched = _best(lambda: explain_batch(handle, x, methods), repeat=3)
    single = _best(lambda: [explain(handle, x[i:i + 1], methods, cache=None) for i in range(n)], repeat=3)
    return {"model": model, "images": n, "methods": list(methods), "batched_s": batched, "single_s": single,
            "speedup": single / batched}


def audit_throughput(scenes: str, model: str, weights: Optional[str], methods: tuple[str, ...], n: int,
                     use_ray: bool, workers: int, batch_size: int) -> dict[str, Any]:
    items = list_images(scenes, limit=n)
    config = AuditConfig(model, methods, METRICS, weights=weights, device="cpu")
    with tempfile.TemporaryDirectory() as out:
        s = run_audit(items, config, out, use_ray=use_ray, workers=workers, batch_size=batch_size, progress=False)
    return {"model": model, "backend": s.backend, "workers": s.workers, "images": s.processed,
            "methods": list(methods), "seconds": s.seconds, "images_per_s": s.images_per_second}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32, help="scenes for the shapes-cnn runs")
    parser.add_argument("--resnet-images", type=int, default=8, help="images for the ResNet-50 runs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, device cpu")
    weights = _weights("shapes-cnn")
    print(f"shapes-cnn weights: {weights or 'random (trained file missing)'}")
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "threads": torch.get_num_threads()}

    print("\n[1] batched vs one image at a time (attribution only)")
    figures["batched"] = [batched_vs_single("shapes-cnn", weights, 32, ("gradcam",)),
                          batched_vs_single("shapes-cnn", weights, 32, ("gradcam", "layercam", "saliency")),
                          batched_vs_single("resnet50", None, 8, ("gradcam",))]
    for r in figures["batched"]:
        print(f"  {r['model']:<11} {r['images']:>3} img  {','.join(r['methods']):<26} batched {r['batched_s']:6.2f} s"
              f"  single {r['single_s']:6.2f} s  speedup x{r['speedup']:.1f}")

    print("\n[2] attribution cost vs methods (shapes-cnn, 32 images, batched)")
    handle = load_model("shapes-cnn", weights, "cpu")
    x = torch.cat([handle.preprocess(Image.fromarray(generate_scene(2, i).image)) for i in range(32)])
    sets = [("gradcam",), ("gradcam", "layercam"), ("gradcam", "layercam", "xgradcam", "hirescam"),
            ("gradcam", "layercam", "xgradcam", "hirescam", "saliency", "guided_backprop")]
    figures["methods"] = []
    explain_batch(handle, x, sets[-1])  # warm-up
    for methods in sets:
        t = _best(lambda: explain_batch(handle, x, methods), repeat=3)
        figures["methods"].append({"methods": len(methods), "seconds": t})
        print(f"  {len(methods)} method(s): {t:6.2f} s  ({t / len(methods):.2f} s per method)")

    with tempfile.TemporaryDirectory() as tmp:
        scenes = os.path.join(tmp, "scenes")
        write_scenes((generate_scene(7, i) for i in range(args.images)), scenes, seed=7)
        print(f"\n[3] audit cost vs images (in-process, gradcam, metrics {','.join(METRICS)})")
        figures["images"] = []
        for n in sorted({max(1, args.images // 4), max(1, args.images // 2), args.images}):
            r = audit_throughput(scenes, "shapes-cnn", weights, ("gradcam",), n, False, 1, args.batch_size)
            figures["images"].append(r)
            print(f"  {n:>4} images: {r['seconds']:7.1f} s  {r['seconds'] / n:.3f} s/image")
        n = max(1, args.images // 2)
        print(f"\n[3b] audit cost vs methods (in-process, {n} images, metrics included)")
        figures["audit_methods"] = []
        for methods in sets[:3]:
            r = audit_throughput(scenes, "shapes-cnn", weights, methods, n, False, 1, args.batch_size)
            figures["audit_methods"].append(r)
            print(f"  {len(methods)} method(s): {r['seconds']:7.1f} s  {r['seconds'] / n:.3f} s/image")
        print("\n[4] audit throughput, shapes-cnn, methods gradcam,eigencam")
        runs = [(False, 1)] + ([] if args.no_ray else [(True, 1), (True, 2), (True, 4)])
        figures["throughput"] = _throughput(scenes, "shapes-cnn", weights, args.images, runs, args.batch_size)
        print("\n[5] audit throughput, resnet50 (random weights), gradcam")
        rimages = os.path.join(tmp, "big")
        write_scenes((generate_scene(8, i, size=224) for i in range(args.resnet_images)), rimages, seed=8)
        figures["resnet50"] = _throughput(rimages, "resnet50", None, args.resnet_images,
                                          [(False, 1)] + ([] if args.no_ray else [(True, 1), (True, 2)]),
                                          min(args.batch_size, 4), methods=("gradcam",))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)
    return 0


def _throughput(scenes: str, model: str, weights: Optional[str], n: int, runs: list[tuple[bool, int]],
                batch_size: int, methods: tuple[str, ...] = ("gradcam", "eigencam")) -> list[dict[str, Any]]:
    out = []
    ray = None
    try:
        for use_ray, workers in runs:
            if use_ray and ray is None:
                import ray as ray_module

                ray = ray_module
                if not ray.is_initialized():
                    ray.init(log_to_driver=False, **LOCAL_RAY)
            r = audit_throughput(scenes, model, weights, methods, n, use_ray, workers, batch_size)
            out.append(r)
            print(f"  {r['backend']:<10} x{r['workers']}: {r['images']} images in {r['seconds']:6.1f} s = "
                  f"{r['images_per_s']:.2f} images/s")
    finally:
        if ray is not None:
            ray.shutdown()
    return out


if __name__ == "__main__":
    raise SystemExit(main())
