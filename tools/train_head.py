#!/usr/bin/env python
"""Train a head's trainable layers (CLIP-DINOiser's two convolutions) with mmengine's ``Runner``.

    python tools/train_head.py configs/train/dinoiser_world_v2.py --work-dir work_dirs/dinoiser_world_v2
    python tools/train_head.py CONFIG --work-dir DIR --resume           # continue from DIR's last checkpoint
    python tools/train_head.py CONFIG --cfg-options train_cfg.max_iters=100 train_dataloader.batch_size=8
    torchrun --nproc_per_node=N tools/train_head.py CONFIG --launcher pytorch   # NCCL on GPUs, gloo on CPU

The config is an mmengine Runner config (``default_scope='ovdense'``; see ``configs/train/``): the model,
datasets and the export hook come from ``ovdense.train`` through ``ovdense.registry``. mmengine writes its
checkpoints (``iter_N.pth``, ``last_checkpoint``) and logs in the work dir; ``HeadExportHook`` writes the
head in the official layout (``dinoiser_last.pt``: ``{'model_state_dict': {obj_proj.*, bkg_decoder.*}}``),
read by ``head=dict(type='dinoiser', checkpoint='DIR/dinoiser_last.pt')``.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="an mmengine Runner config (configs/train/*.py)")
    p.add_argument("--work-dir", default=None, help="checkpoints and logs (default: work_dirs/<config name>)")
    p.add_argument("--resume", action="store_true", help="resume from the work dir's last checkpoint")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="override config entries, e.g. train_cfg.max_iters=100")
    p.add_argument("--launcher", choices=("none", "pytorch"), default="none",
                   help="'pytorch' under torchrun (one process per device)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def build_runner(args):
    import torch
    from mmengine.config import Config

    if not os.path.isfile(args.config):
        raise SystemExit(f"error: config {args.config}: no such file")
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.setdefault("default_scope", "ovdense")
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(args.config))[0])
    if args.resume:
        cfg.resume = True
    if args.launcher != "none":
        from ovdense.distributed import init_distributed

        cuda = torch.cuda.is_available()
        # our own set-up: mmengine's init_dist calls torch.cuda.set_device, which fails without a GPU
        init_distributed("cuda" if cuda else "cpu")
        if cfg.get("model_wrapper_cfg") is None:
            cfg.model_wrapper_cfg = dict(type="ovdense.DeviceAwareDDP", broadcast_buffers=False)
        if not cuda:
            cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    from ovdense.train import HeadRunner

    return HeadRunner.from_cfg(cfg)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    runner = build_runner(args)
    runner.train()
    close_process_group()


def close_process_group() -> None:
    """After training under torchrun: wait for every rank, then destroy the process group, so that no
    rank exits while gloo's threads still run (a rank can abort with "terminate called without an
    active exception" otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
