"""Training CLIP-DINOiser's two convolutions with mmengine's Runner (ovdense.train, tools/train_head.py):
the loss goes down, a resumed run equals an uninterrupted one, the exported checkpoint is what the
``dinoiser`` head loads, and the CLI runs end to end (tiny random models, CPU, a few iterations)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training_helpers import losses, run

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = {"embed_dim": 32, "quick_gelu": False,
             "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
TINY_DINO = dict(type="timm_vit", model_name="vit_small_patch8_224",
                 model_kwargs=dict(depth=2, embed_dim=32, num_heads=2, img_size=32))


def _images(folder: Path, n: int = 6) -> Path:
    """Small structured RGB images (blobs on a gradient) in nested folders, plus a non-image file."""
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[:40, :48]
        img = np.stack([xx * 5, yy * 6, np.full_like(xx, 60)], -1).astype(np.float32)
        for _ in range(2):
            cy, cx, r = rng.integers(8, 32), rng.integers(8, 40), rng.integers(5, 10)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        sub = folder / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(sub / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_head")
    clip_json = root / "tiny-clip.json"
    clip_json.write_text(json.dumps(TINY_CLIP))
    return root, clip_json, _images(root / "images")


def tiny_config(clip_json, images, work_dir, max_iters=4, checkpoint_interval=2, lr=1e-2):
    return dict(
        default_scope="ovdense",
        work_dir=str(work_dir),
        model=dict(type="DINOiserTrainer", backbone=dict(clip_model=str(clip_json), pretrained=None),
                   teacher=TINY_DINO, head=dict(gamma=0.2, feats_idx=-2, in_dim=16, seed=0)),
        train_dataloader=dict(batch_size=2, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
                              collate_fn=dict(type="default_collate"),
                              dataset=dict(type="ImageFolder", root=str(images), crop=32, short_side=32)),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=max_iters),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=lr),
                           paramwise_cfg=dict(custom_keys={"head.bkg_decoder": dict(lr_mult=10.0)})),
        param_scheduler=[dict(type="MultiStepLR", by_epoch=False, milestones=[3], gamma=0.1)],
        default_hooks=dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=1),
                           param_scheduler=dict(type="ParamSchedulerHook"),
                           checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=checkpoint_interval)),
        custom_hooks=[dict(type="HeadExportHook", filename="dinoiser_last.pt")],
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
        log_level="WARNING",
    )


def test_registries_reach_the_training_entries():
    """What the Runner does under ``default_scope='ovdense'``: mmengine's root registries switch to
    ovdense's nodes, which import ovdense.train on the first look-up and fall back to mmengine's own."""
    from mmengine.registry import DATASETS, HOOKS, MODELS

    with MODELS.switch_scope_and_registry("ovdense") as models:
        assert models.get("DINOiserTrainer").__name__ == "DINOiserTrainer"
        assert models.get("BaseDataPreprocessor").__name__ == "BaseDataPreprocessor"
    with DATASETS.switch_scope_and_registry("ovdense") as datasets:
        assert datasets.get("ImageFolder").__module__ == "ovdense.train.data"
        assert datasets.get("WorldV2Images").__name__ == "WorldV2Images"
    with HOOKS.switch_scope_and_registry("ovdense") as hooks:
        assert hooks.get("HeadExportHook").__name__ == "HeadExportHook"
        assert hooks.get("CheckpointHook").__name__ == "CheckpointHook"  # mmengine's, through the parent


def test_image_folder_is_recursive_and_reproducible(setup):
    from ovdense.train import ImageFolder

    _, _, images = setup
    a, b = ImageFolder(str(images), crop=24, short_side=30), ImageFolder(str(images), crop=24, short_side=30)
    assert len(a) == 6 and all(f.endswith(".png") for f in a.files)
    first = [a[i]["inputs"] for i in range(6)]
    assert all(x.shape == (3, 24, 24) and x.dtype == torch.uint8 for x in first)
    assert all(torch.equal(x, b[i]["inputs"]) for i, x in enumerate(first))  # same draws
    assert not all(torch.equal(x, a[i]["inputs"]) for i, x in enumerate(first))  # a second read differs


def test_training_lowers_the_loss_and_resume_equals_an_uninterrupted_run(setup, tmp_path):
    root, clip_json, images = setup
    torch.set_num_threads(2)
    full = run(tiny_config(clip_json, images, tmp_path / "full", max_iters=6, checkpoint_interval=3))
    history = losses(full)
    assert len(history) == 6 and history[-1] < history[0], history
    # the same run stopped after iteration 3 (the lr milestone), then resumed from the work dir's last checkpoint
    cut = tiny_config(clip_json, images, tmp_path / "cut", max_iters=6, checkpoint_interval=3)
    run(cut, stop_after=3)
    assert (tmp_path / "cut" / "iter_3.pth").is_file() and not (tmp_path / "cut" / "iter_6.pth").exists()
    resumed = run(cut, resume=True)
    assert resumed.iter == 6
    assert losses(resumed)[-3:] == history[-3:]  # the same next losses, bit for bit
    a = torch.load(tmp_path / "full" / "iter_6.pth", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "cut" / "iter_6.pth", map_location="cpu", weights_only=False)
    assert sorted(a["state_dict"]) == ["head.bkg_decoder.bias", "head.bkg_decoder.weight", "head.obj_proj.bias",
                                       "head.obj_proj.weight"]  # CLIP and DINO are not in the checkpoints
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]


def test_exported_checkpoint_round_trips_into_the_dinoiser_head(setup, tmp_path):
    from ovdense.heads.dinoiser import CHECKPOINT_KEYS, DINOiserHead

    _, clip_json, images = setup
    runner = run(tiny_config(clip_json, images, tmp_path, max_iters=2, checkpoint_interval=2))
    path = tmp_path / "dinoiser_last.pt"
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(data["model_state_dict"]) == sorted(CHECKPOINT_KEYS) and data["iter"] == 2
    trainer = runner.model
    loaded = DINOiserHead(checkpoint=str(path), feats_idx=-2)
    clip = trainer.clip
    x = torch.randn(2, 3, 32, 40)
    view = clip.prefix(x, taps=loaded.taps)
    with torch.no_grad():
        mine, theirs = trainer.head.eval()(view, clip), loaded(view, clip)
    assert torch.equal(mine.features, theirs.features)
    assert torch.equal(mine.extras["background"], theirs.extras["background"])
    # and the trained convolutions are not the random initial ones
    fresh = DINOiserHead(feats_idx=-2, in_dim=16, width=32, seed=0)
    assert not torch.equal(fresh.obj_proj.weight, loaded.obj_proj.weight)


def _cli(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / "tools" / "train_head.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_trains_and_exports_in_process(setup, tmp_path):
    """``tools/train_head.py``'s ``main`` on a config file: checkpoints, logs and the exported head."""
    from mmengine.config import Config

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import train_head
    finally:
        sys.path.remove(str(REPO / "tools"))
    _, clip_json, images = setup
    config = tmp_path / "tiny_train.py"
    Config(tiny_config(clip_json, images, tmp_path / "unused", max_iters=2)).dump(str(config))
    work = tmp_path / "work"
    train_head.main([str(config), "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=1",
                     "default_hooks.checkpoint.interval=1"])
    assert (work / "iter_1.pth").is_file() and (work / "last_checkpoint").is_file()
    assert torch.load(work / "dinoiser_last.pt", weights_only=True)["iter"] == 1
    assert list(work.glob("*/*.log"))  # mmengine's log file
    with pytest.raises(SystemExit, match="no such file"):
        train_head.main([str(tmp_path / "nope.py")])


@pytest.mark.slow
def test_cli_subprocess_trains_resumes_and_exports(setup, tmp_path):
    from mmengine.config import Config

    _, clip_json, images = setup
    config = tmp_path / "tiny_train.py"
    Config(tiny_config(clip_json, images, tmp_path / "unused", max_iters=2)).dump(str(config))
    work = tmp_path / "work"
    done = _cli([str(config), "--work-dir", str(work), "--threads", "1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "iter_2.pth").is_file() and (work / "dinoiser_last.pt").is_file()
    done = _cli([str(config), "--work-dir", str(work), "--resume", "--cfg-options", "train_cfg.max_iters=3"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(work / "dinoiser_last.pt", weights_only=True)["iter"] == 3
    missing = _cli([str(tmp_path / "nope.py")], tmp_path)
    assert missing.returncode != 0 and "no such file" in missing.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(setup, tmp_path):
    """``torchrun --nproc_per_node=2 ... --launcher pytorch`` on CPU (gloo, DeviceAwareDDP): both ranks train,
    rank 0 writes the checkpoints."""
    from mmengine.config import Config

    _, clip_json, images = setup
    config = tmp_path / "tiny_train.py"
    Config(tiny_config(clip_json, images, tmp_path / "unused", max_iters=2)).dump(str(config))
    work = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                           str(REPO / "tools" / "train_head.py"), str(config), "--work-dir", str(work),
                           "--launcher", "pytorch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "iter_2.pth").is_file() and (work / "dinoiser_last.pt").is_file()


@pytest.mark.slow
def test_trained_tiny_convs_beat_random_convs_on_world_v2():
    """The fixture tests/fixtures/synth_dinoiser/last.pt (configs/train/dinoiser_world_v2.py, tiny DINO teacher)
    segments held-out world v2 scenes better than the same head with random convolutions (SYNTHETIC)."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from synthetic_dinoiser_eval import evaluate, heads
    finally:
        sys.path.remove(str(REPO / "tools"))
    specs = heads(str(REPO / "tests" / "fixtures" / "synth_dinoiser" / "last.pt"))
    results = evaluate({k: v for k, v in specs.items() if k.startswith("dinoiser")}, n=8)
    trained, random = results["dinoiser (trained convs)"]["mIoU"], results["dinoiser (random convs, seed 0)"]["mIoU"]
    assert trained > random, results
