"""``python -m cnnviz_core scenes``: write procedural shape scenes with masks (:mod:`..scenes`).

Writes ``scene_NNNN.png``, ``scene_NNNN.mask.png`` and ``scenes.json`` into ``--out``; prints the
path of ``scenes.json``. Bad arguments give one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse

from ..scenes import TAG_MODES, generate_scenes, write_scenes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("scenes", help="generate shape scenes with ground-truth masks")
    p.add_argument("--count", type=int, required=True, help="number of scenes (>= 1)")
    p.add_argument("--seed", type=int, required=True, help="random seed; scene i uses (seed, i)")
    p.add_argument("--objects", type=int, default=1, help="objects per scene: 1 or 2")
    p.add_argument("--size", type=int, default=128, help="side in pixels, 64..1024")
    p.add_argument("--tag", default="none", help=f"corner tag: {' | '.join(TAG_MODES)}")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenes = generate_scenes(args.count, args.seed, size=args.size, objects=args.objects,
                             tag=args.tag)
    path = write_scenes(scenes, args.out, seed=args.seed, size=args.size, objects=args.objects,
                        tag=args.tag)
    print(path)
    return 0
