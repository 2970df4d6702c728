"""``python -m cnnviz_core filters | maximize | dream | style``: the feature-visualization pages in batch.

Each writes one PNG (``--out``), prints its path on stdout and progress on stderr. Ranges are
checked before any model is loaded; a bad value gives one line on stderr and exit code 2.
``--weights``: omitted = the model's default weights, ``imagenet``, ``none`` (random init, seed 0)
or the path of a state_dict. ``style`` needs ImageNet VGG weights for a meaningful picture: offline
without them it fails with one line unless ``--weights none``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from PIL import Image

from ..featureviz import deep_dream, kernel_montage, maximize_activation, style_transfer
from ..featureviz.parametrization import PARAMETRIZATIONS
from ..featureviz.params import OCTAVES_RANGE, SIZE_RANGE, STEPS_RANGE, check_choice, check_int
from ..featureviz.style import INITS, OPTIMIZERS
from ..images import load_image
from ..models import ModelHandle
from ..progress import stderr_progress
from .common import add_model_args, load_model_from_args


def _range(r: tuple[int, int]) -> str:
    return f"{r[0]}..{r[1]}"


def _add_model(p: argparse.ArgumentParser, default: Optional[str] = None) -> None:
    add_model_args(p, default_model=default)


def _load(args: argparse.Namespace) -> ModelHandle:
    return load_model_from_args(args)


def _save(image, out: str) -> int:  # noqa: ANN001 - uint8 array
    path = Path(out)
    Image.fromarray(image).save(path, format="PNG")
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("filters", help="conv kernels of a layer as an image grid")
    _add_model(p)
    p.add_argument("--layer", required=True, help="Conv2d layer path, e.g. features.0")
    p.add_argument("--view", default="auto", help="auto | rgb | per_channel | summary")
    p.add_argument("--scaling", default="per_tile", help="per_tile | shared")
    p.add_argument("--max-filters", type=int, default=64, help="first N filters (default 64)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=run_filters)

    p = subparsers.add_parser("maximize", help="synthesize the image that maximizes a channel or class")
    _add_model(p)
    p.add_argument("--layer", help="layer path (omit with --class)")
    p.add_argument("--channel", type=int, help="channel index (omit: the whole layer)")
    p.add_argument("--class", dest="class_", help="class index or name (maximize its logit)")
    p.add_argument("--steps", type=int, default=256, help=f"optimization steps, {_range(STEPS_RANGE)}")
    p.add_argument("--size", type=int, help=f"image side in px, {_range(SIZE_RANGE)} (default: model input)")
    p.add_argument("--param", default="pixel", help="pixel | fourier (decorrelated colour + Fourier)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=run_maximize)

    p = subparsers.add_parser("dream", help="Deep Dream a photo")
    p.add_argument("image", help="input image file")
    _add_model(p)
    p.add_argument("--layer", help="layer path (omit with --class)")
    p.add_argument("--channel", type=int, help="channel index (omit: the whole layer)")
    p.add_argument("--class", dest="class_", help="class index or name (class-targeted hallucination)")
    p.add_argument("--guide", help="guide image file (guided dream)")
    p.add_argument("--octaves", type=int, default=4, help=f"octaves, {_range(OCTAVES_RANGE)}")
    p.add_argument("--steps", type=int, default=10, help=f"steps per octave, {_range(STEPS_RANGE)}")
    p.add_argument("--step-size", type=float, default=0.01, help="normalized step size (default 0.01)")
    p.add_argument("--max-side", type=int, default=512, help=f"longer side bound in px, {_range(SIZE_RANGE)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=run_dream)

    p = subparsers.add_parser("style", help="neural style transfer (Gatys et al. 2016)")
    p.add_argument("content", help="content image file")
    p.add_argument("style", help="style image file")
    _add_model(p, default="vgg19")
    p.add_argument("--steps", type=int, default=300, help=f"optimizer steps, {_range(STEPS_RANGE)}")
    p.add_argument("--size", type=int, default=256, help=f"output longer side in px, {_range(SIZE_RANGE)}")
    p.add_argument("--optimizer", default="lbfgs", help="lbfgs | adam")
    p.add_argument("--init", default="content", help="content | style | noise")
    p.add_argument("--style-weight", type=float, default=1e6)
    p.add_argument("--tv-weight", type=float, default=0.0)
    p.add_argument("--preserve-color", action="store_true", help="luminance-only transfer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=run_style)


def run_filters(args: argparse.Namespace) -> int:
    handle = _load(args)
    return _save(kernel_montage(handle, args.layer, view=args.view, scaling=args.scaling,
                                max_filters=args.max_filters), args.out)


def run_maximize(args: argparse.Namespace) -> int:
    check_int("steps", args.steps, *STEPS_RANGE)
    if args.size is not None:
        check_int("size", args.size, *SIZE_RANGE)
    check_choice("parametrization", args.param, PARAMETRIZATIONS)
    handle = _load(args)
    result = maximize_activation(handle, args.layer, args.channel, class_index=args.class_, steps=args.steps,
                                 size=args.size, parametrization=args.param, seed=args.seed,
                                 progress=stderr_progress("maximize "))
    return _save(result.image, args.out)


def run_dream(args: argparse.Namespace) -> int:
    check_int("octaves", args.octaves, *OCTAVES_RANGE)
    check_int("steps", args.steps, *STEPS_RANGE)
    check_int("max_side", args.max_side, *SIZE_RANGE)
    image = load_image(args.image)
    guide = load_image(args.guide) if args.guide else None
    handle = _load(args)
    result = deep_dream(handle, image, args.layer, args.channel, class_index=args.class_, guide=guide,
                        octaves=args.octaves, steps=args.steps, step_size=args.step_size,
                        max_side=args.max_side, seed=args.seed, progress=stderr_progress("dream "))
    return _save(result.image, args.out)


def run_style(args: argparse.Namespace) -> int:
    check_int("steps", args.steps, *STEPS_RANGE)
    check_int("size", args.size, *SIZE_RANGE)
    check_choice("optimizer", args.optimizer, OPTIMIZERS)
    check_choice("init", args.init, INITS)
    content, style = load_image(args.content), load_image(args.style)
    handle = _load(args)
    result = style_transfer(handle, content, style, steps=args.steps, size=args.size, optimizer=args.optimizer,
                            init=args.init, style_weight=args.style_weight, tv_weight=args.tv_weight,
                            preserve_color=args.preserve_color, seed=args.seed,
                            progress=stderr_progress("style "))
    return _save(result.image, args.out)
