"""Command line of ``python -m cnnviz_core.bench`` (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Any

import torch

SECTIONS = ("models", "perturbation", "scorecam")


def pointing_game(count: int) -> None:
    from ..attribution import CAM_METHODS
    from ..metrics import format_table, pointing_game_table
    from ..models import get_entry, load_model
    from ..scenes import generate_scene

    handle = load_model("shapes-cnn", weights=get_entry("shapes-cnn").available_weights())
    scenes = [generate_scene(20_000, i, objects=2) for i in range(count)]
    methods = [m for m in CAM_METHODS if m != "cam"] + ["cam", "guided_backprop"]
    print(f"shapes-cnn ({handle.weights_label}), {count} two-object scenes (seed 20000), one target per object")
    rows = pointing_game_table(handle, methods, scenes, tolerance=(0.0, 4.0), channels=None)
    print(format_table(rows), flush=True)


def parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    p = argparse.ArgumentParser(prog="python -m cnnviz_core.bench", description=(doc or "").split("\n")[0])
    p.add_argument("--sections", default=None,
                   help="comma-separated among models, perturbation, scorecam "
                        "(default all; --quick: models,perturbation)")
    p.add_argument("--models", default=None, help="comma-separated (default resnet50,vgg16; --quick: resnet18)")
    p.add_argument("--repeats", type=int, default=7, help="rounds of the per-model cases")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--quick", action="store_true",
                   help="resnet18, 3 repeats, slow references skipped, no exact Score-CAM")
    p.add_argument("--skip-slow-references", action="store_true",
                   help="pgc Ablation-CAM on 10%% of channels, its times x10 (labelled)")
    p.add_argument("--slow-repeats", type=int, default=3, help="rounds of the per-model Ablation-CAM pair")
    p.add_argument("--scorecam-model", default="resnet50", help="model of the exact Score-CAM comparison")
    p.add_argument("--scorecam-size", type=int, default=224)
    p.add_argument("--scorecam-repeats", type=int, default=3)
    p.add_argument("--scorecam-batch", type=int, default=16, help="masked images per forward, both sides")
    p.add_argument("--perturb-model", default=None,
                   help="model of the perturbation-method pairs (default resnet50; --quick: resnet18)")
    p.add_argument("--perturb-size", type=int, default=None, help="default 224; --quick: 112")
    p.add_argument("--perturb-layer", default="layer1", help="CAM layer of the pairs ('default': the model's); "
                   "fewer channels = fewer forwards (resnet50: layer1 256, layer2 512, layer3 1024, layer4 2048; "
                   "resnet18: layer1 64, layer2 128, layer3 256, layer4 512)")
    p.add_argument("--perturb-batch", type=int, default=16, help="images per forward, both sides")
    p.add_argument("--perturb-forwards", type=int, default=256, help="RISE masks, LIME and KernelSHAP samples")
    p.add_argument("--perturb-samples", type=int, default=2,
                   help="SS-CAM samples per channel = IS-CAM steps - 1 (TorchCAM num_samples)")
    p.add_argument("--perturb-repeats", type=int, default=3)
    p.add_argument("--perturb-methods", default=None, help="only these perturbation methods (comma-separated)")
    p.add_argument("--verbose", action="store_true", help="print every timed run of the long pairs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--pointing-game", type=int, default=0, metavar="N")
    p.add_argument("--units", action="store_true",
                   help="unit benches: a neuron's projections vs the full-network floor (--models, default "
                        "resnet50,vgg16), top activations over --scenes shapes-cnn scenes vs a plain batched forward")
    p.add_argument("--scenes", type=int, default=1000, help="scenes of the --units top-activations bench")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    return p


def _write(path: str | None, figures: Any) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(figures, fh, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")  # pgc's progress bars
    warnings.filterwarnings("ignore", module="captum")
    warnings.filterwarnings("ignore", module="pytorch_grad_cam")
    warnings.filterwarnings("ignore", module="torchcam")
    if args.memory_probe:
        from .models_bench import memory_probe

        print(memory_probe(args.models, args.memory_probe, args.size))
        return 0
    if args.pointing_game:
        pointing_game(args.pointing_game)
        return 0
    if args.units:
        from ..attribution import unitbench

        _write(args.json, unitbench.main((args.models or "resnet50,vgg16").split(","), args.size,
                                         min(args.repeats, 5), args.scenes))
        return 0
    sections = (args.sections or ",".join(s for s in SECTIONS if not (args.quick and s == "scorecam"))).split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose among {', '.join(SECTIONS)}")
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.skip_slow_references = True
    args.perturb_model = args.perturb_model or ("resnet18" if args.quick else "resnet50")
    args.perturb_size = args.perturb_size or (112 if args.quick else 224)
    from .models_bench import bench_model
    from .perturbation_bench import perturbation_bench, scorecam_comparison

    figures: dict[str, Any] = {}
    if "models" in sections:
        for name in (args.models or ("resnet18" if args.quick else "resnet50,vgg16")).split(","):
            figures[name] = bench_model(name, args)
    if "perturbation" in sections:
        figures["perturbation"] = perturbation_bench(args)
    if "scorecam" in sections:
        figures["scorecam"] = scorecam_comparison(args)
    _write(args.json, figures)
    return 0
