#!/usr/bin/env python
"""Reference-image mode on held-out synthetic world v2 scenes (SYNTHETIC figures).

    python tools/synthetic_references_eval.py --scenes 30 --shots 1 2 5 --out /tmp/references_eval

Tiny CLIP v2, sliding 64 px windows with stride 32, one template, scale 40 (the setting of
``tools/synthetic_eval.py --world v2``). References are eval-range scenes from index offset
500,000 (disjoint from the evaluated ones; the training range never shows the four held-out
compositions), taken in index order until every class is in at least ``k`` of them (``k`` = shots
per class); each scene's whole label map labels it. Rows per head and ``k``: text only, text + references
(weight 0.5), references alone (weight 1.0), and a control whose reference label maps have their
class ids permuted (prototypes of the wrong classes: it must not help).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))


#: where reference scenes are taken: eval-range indices far from the evaluated ones (the training
#: range never shows the four held-out compositions, so it cannot give them references)
REFERENCE_OFFSET = 500_000


def reference_scenes(world, shots: int, limit: int = 5000):
    """Eval-range scenes from :data:`REFERENCE_OFFSET` on, in index order, until every class is in
    ``shots`` of them (disjoint from the evaluated scenes)."""
    need = np.full(world.num_classes, shots)
    picked = []
    start = world.eval_range[0] + REFERENCE_OFFSET
    for index in range(start, start + limit):
        scene = world.sample(index)
        present = np.unique(scene.label_map)
        present = present[(present >= 0) & (present < world.num_classes)]
        if (need[present] > 0).any():
            picked.append(scene)
            need[present] -= 1
        if (need <= 0).all():
            return picked
    raise RuntimeError(f"fewer than {shots} training scenes for some class in the first {limit}")


def evaluate(heads=("naclip",), shots=(1, 2, 5), n: int = 30, progress: bool = True):
    import torch
    from tqdm import tqdm

    from ovdense.evaluation import SemanticEvaluator
    from ovdense.synthetic import WorldV2
    from synthetic_eval import build, fixture_v2

    world = WorldV2(seed=0)
    names = world.names_file_text().strip().split("\n")
    scenes = [world.sample(i) for i in world.indices("eval", n, 0)]
    out = {}
    for head in heads:
        config, weights = fixture_v2()
        seg = build(head, config, weights, world="v2")
        contexts = [seg.encode_image(s.image) for s in tqdm(scenes, desc=f"{head}: encode", disable=not progress)]

        def miou():
            ev = SemanticEvaluator(world.num_classes)
            with torch.no_grad():
                for ctx, s in zip(contexts, scenes):
                    ev.update(seg.predict(ctx).label_map, s.label_map)
            return ev.compute().mIoU / 100

        seg.set_references(None)
        rows = {"text only": miou()}
        rng = np.random.default_rng(0)
        for k in shots:
            refs_scenes = reference_scenes(world, k)
            t0 = time.time()
            seg.add_references([s.image for s in refs_scenes], [s.label_map for s in refs_scenes], names,
                               replace=True)
            build_s = time.time() - t0
            for weight in (0.5, 1.0):
                seg.reference_weight = weight
                rows[f"{k} shot(s), weight {weight}"] = miou()
            perm = rng.permutation(world.num_classes)
            seg.add_references([s.image for s in refs_scenes], [perm[s.label_map] for s in refs_scenes], names,
                               replace=True, weight=0.5)
            rows[f"{k} shot(s), permuted labels (control)"] = miou()
            rows[f"{k} shot(s): reference images"] = len(refs_scenes)
            rows[f"{k} shot(s): build seconds"] = round(build_s, 2)
            seg.set_references(None)
        out[head] = rows
    return out


def markdown(results, n: int) -> str:
    lines = [f"World v2 (seed 0), {n} eval-range scenes, tiny CLIP v2; references from other eval-range scenes. "
             "SYNTHETIC.", ""]
    for head, rows in results.items():
        lines += [f"**{head}**", "", "| setting | mIoU |", "|---|---|"]
        for key, value in rows.items():
            lines.append(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=30)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--heads", nargs="+", default=["naclip"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = evaluate(args.heads, args.shots, args.scenes)
    table = markdown(results, args.scenes)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "references_eval.md"), "w") as fh:
            fh.write(table + "\n")
        with open(os.path.join(args.out, "references_eval.json"), "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
