"""Detector options shared by ``detect`` and ``eval-coco``: SAM weights and knobs, ranking,
NMS and limits, and the ``detector`` config section they produce."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from .common import UserError, _nonneg_int, _pos_int, _prob, check_file

SAM_KNOBS = (("points_per_side", _pos_int), ("points_per_batch", _pos_int), ("pred_iou_thresh", float),
             ("stability_score_thresh", float), ("box_nms_thresh", float), ("crop_n_layers", _nonneg_int),
             ("min_mask_region_area", _nonneg_int))


def add_sam_args(p: argparse.ArgumentParser) -> None:
    """``--sam-checkpoint``/``--sam-model``/``--sam-config`` and SAM's automatic-mask knobs."""
    s = p.add_argument_group("SAM (segment-anything; nothing is downloaded)")
    s.add_argument("--sam-checkpoint", metavar="FILE", help="local SAM weights (sam_vit_b_01ec64.pth, ...)")
    s.add_argument("--sam-model", default="vit_b", choices=("vit_b", "vit_l", "vit_h"),
                   help="SAM model type of --sam-checkpoint")
    s.add_argument("--sam-config", metavar="JSON", help="sizes of a small SAM (the tiny fixture's model.json)")
    for name, kind in SAM_KNOBS:
        s.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"SAM automatic masks: {name} (default: the config's, else SAM's)")


def add_detection_args(p: argparse.ArgumentParser) -> None:
    """Ranking, confidence, NMS and count limits of a Detector."""
    d = p.add_argument_group("detections")
    d.add_argument("--ranking", choices=("probability", "probability_x_proposal"), default=None,
                   help="confidence of a region: its class probability, or that times the proposal's score "
                        "(SAM's predicted IoU; default with SAM proposals)")
    d.add_argument("--min-confidence", type=_prob, default=None, help="drop detections below this confidence")
    d.add_argument("--nms", type=_prob, default=None, metavar="IOU", help="mask NMS IoU threshold (default: none)")
    d.add_argument("--class-agnostic-nms", action="store_true", help="NMS across classes (default: per class)")
    d.add_argument("--max-detections", type=_pos_int, default=None, help="keep at most N per image")


def detector_section(cfg: Any, args: argparse.Namespace) -> Dict[str, Any]:
    """The config's ``detector`` section with the flags applied (and a SAM provider added to
    ``cfg.features`` for ``--sam-checkpoint``/``--sam-config``)."""
    section = cfg.get("detector") or {}
    section = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    if args.sam_checkpoint or args.sam_config:
        for path, what in ((args.sam_checkpoint, "SAM weights"), (args.sam_config, "SAM model config")):
            if path:
                check_file(path, what)
        sam = dict(type="sam", model_type=args.sam_model, checkpoint=args.sam_checkpoint)
        if args.sam_config:
            sam["model_config"] = args.sam_config
        features = dict(cfg.get("features") or {})
        features["sam"] = sam
        cfg.features = features
    has_sam = any((spec or {}).get("type") == "sam" for spec in dict(cfg.get("features") or {}).values())
    proposals = section.get("proposals")
    proposals = dict(type=proposals) if isinstance(proposals, str) else dict(proposals or {})
    if args.proposals:
        if args.proposals != proposals.get("type"):
            proposals = {}
        proposals["type"] = args.proposals
    proposals.setdefault("type", "sam_automatic" if has_sam else "connected_components")
    knobs = {name: getattr(args, name) for name, _ in SAM_KNOBS if getattr(args, name) is not None}
    if knobs and proposals["type"] != "sam_automatic":
        raise UserError(f"--{next(iter(knobs)).replace('_', '-')} sets SAM's automatic masks, but the proposals are "
                        f"{proposals['type']}")
    if proposals["type"] == "sam_automatic" and not has_sam:
        raise UserError("sam_automatic proposals need SAM: pass --sam-checkpoint FILE (or a config with "
                        "features.sam)")
    proposals.update(knobs)
    section["proposals"] = proposals
    scorer_flag = getattr(args, "scorer_type", None)
    if proposals["type"] != "connected_components" or args.ranking is not None or scorer_flag:
        scorer = section.get("scorer") or dict(type="mask_pooling")
        scorer = dict(type=scorer) if isinstance(scorer, str) else dict(scorer)
        if scorer_flag and scorer_flag != scorer.get("type"):
            scorer = dict(type=scorer_flag)
        if args.ranking is not None:
            scorer["confidence"] = args.ranking
        elif proposals["type"] == "sam_automatic":
            scorer.setdefault("confidence", "probability_x_proposal")
        section["scorer"] = scorer
    for key, value in (("min_confidence", args.min_confidence), ("nms_threshold", args.nms),
                       ("max_detections", args.max_detections)):
        if value is not None:
            section[key] = value
    if args.class_agnostic_nms:
        section["class_agnostic_nms"] = True
    return section


def check_detector_section(section: Dict[str, Any]) -> None:
    """Unknown proposal sources or scorers fail before any model is loaded."""
    from ..registry import PROPOSALS, SCORERS, get

    for registry, spec in ((PROPOSALS, section.get("proposals")), (SCORERS, section.get("scorer"))):
        name = spec if isinstance(spec, str) or spec is None else spec.get("type")
        if name is not None:
            try:
                get(registry, name)
            except KeyError as err:
                raise UserError(err.args[0] if err.args else str(err)) from None
