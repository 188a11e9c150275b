"""Training Talk2DINO's text projection with mmengine's Runner (ovdense.train.talk2dino): the official loss,
the loss goes down, a resumed run equals an uninterrupted one, and the exported projection is what the
``talk2dino`` head loads (tiny random CLIP text tower and DINO, CPU, a few iterations)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from training_helpers import losses, run

REPO = Path(__file__).resolve().parents[1]
#: a tiny CLIP whose text tower takes CLIP's BPE tokens (vocab 49408), 24-d embeddings
TINY_CLIP = {"embed_dim": 24, "quick_gelu": False,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
TINY_DINO = dict(type="timm_vit", model_name="vit_small_patch8_224",
                 model_kwargs=dict(depth=2, embed_dim=32, num_heads=2, img_size=32), output="tokens+cls_attn")
WORDS = ["red", "blue", "green", "circle", "square", "bar", "sand", "water"]


def _captioned(folder: Path, n: int = 8) -> Path:
    """Small images (blobs on a gradient) with COCO-captions JSON (two captions for the first image)."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        yy, xx = np.mgrid[:40, :48]
        img = np.stack([xx * 5, yy * 6, np.full_like(xx, 60)], -1).astype(np.float32)
        cy, cx, r = rng.integers(8, 32), rng.integers(8, 40), rng.integers(5, 10)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / "img" / f"{i:03d}.png")
        images.append({"id": 100 + i, "file_name": f"{i:03d}.png"})
        anns.append({"id": i, "image_id": 100 + i, "caption": f"a {WORDS[i % 8]} {WORDS[(3 * i + 1) % 8]} thing"})
    anns.append({"id": n, "image_id": 100, "caption": "another caption of the first image"})
    (folder / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_talk2dino")
    clip_json = root / "tiny-clip.json"
    clip_json.write_text(json.dumps(TINY_CLIP))
    return root, clip_json, _captioned(root / "data")


def tiny_config(clip_json, data, work_dir, max_iters=4, checkpoint_interval=2, lr=1e-2, **model):
    return dict(
        default_scope="ovdense",
        work_dir=str(work_dir),
        model=dict(type="Talk2DINOTrainer", clip=dict(clip_model=str(clip_json), pretrained=None), dino=TINY_DINO,
                   projection=dict(hidden_layers=1, act="tanh", seed=0), attn_scale=None, **model),
        # every batch holds the 8 first captions (one image twice): the logged loss is the dataset's
        train_dataloader=dict(batch_size=8, num_workers=0, sampler=dict(type="InfiniteSampler", shuffle=True),
                              collate_fn=dict(type="default_collate"),
                              dataset=dict(type="COCOCaptions", ann_file=str(data / "captions.json"),
                                           img_dir=str(data / "img"), short_side=32, crop=32, num_captions=8)),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=max_iters),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=lr)),
        param_scheduler=[dict(type="MultiStepLR", by_epoch=False, milestones=[3], gamma=0.1)],
        default_hooks=dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=1),
                           param_scheduler=dict(type="ParamSchedulerHook"),
                           checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=checkpoint_interval)),
        custom_hooks=[dict(type="HeadExportHook", filename="talk2dino_last.pth")],
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
        log_level="WARNING",
    )


def test_registries_and_datasets(setup):
    from mmengine.registry import DATASETS, MODELS

    from ovdense.train import COCOCaptions, WorldV2Captions

    with MODELS.switch_scope_and_registry("ovdense") as models:
        assert models.get("Talk2DINOTrainer").__module__ == "ovdense.train.talk2dino"
    with DATASETS.switch_scope_and_registry("ovdense") as datasets:
        assert datasets.get("COCOCaptions") is COCOCaptions and datasets.get("WorldV2Captions") is WorldV2Captions
    _, _, data = setup
    ds = COCOCaptions(str(data / "captions.json"), str(data / "img"), short_side=32, crop=32)
    assert len(ds) == 9  # one item per caption
    item = ds[8]
    assert item["inputs"].shape == (3, 32, 32) and item["inputs"].dtype == torch.uint8
    assert item["captions"] == "another caption of the first image" and item["keys"] == ds[0]["keys"]
    world = WorldV2Captions(num_scenes=3, shuffle_captions=True)
    a = world[0]
    assert a["inputs"].shape == (3, 160, 224) and a["captions"].startswith("a photo of")
    assert WorldV2Captions(num_scenes=3)[0]["captions"] == a["captions"]  # reproducible draws


def test_loss_is_the_official_infonce(setup):
    """Per-head attention pooling, best head per pair, symmetric InfoNCE at 0.07 divided by B^2, written out."""
    from ovdense.train import Talk2DINOTrainer

    _, clip_json, _ = setup
    torch.manual_seed(0)
    model = Talk2DINOTrainer(clip=dict(clip_model=str(clip_json), pretrained=None), dino=TINY_DINO,
                             projection=dict(seed=0), attn_scale=0.125)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    captions = ["a red circle", "two blue bars", "sand and water"]
    out = model.dino(images)
    c, n = 32, 16
    tokens, logits = out[:, :c].flatten(2).transpose(1, 2), out[:, c:].flatten(2)  # [B, n, C], [B, M, n]
    logits = logits / model.dino.model.blocks[-1].attn.scale * 0.125
    heads = F.normalize((tokens.unsqueeze(1) * logits.softmax(-1).unsqueeze(-1)).mean(dim=2), dim=-1)
    assert tokens.shape[1] == n and heads.shape == (3, 2, 32)
    text = F.normalize(model.projection(model.clip.encode_text(captions)), dim=-1)
    best = torch.einsum("ik,ijk->ij", text, heads).softmax(-1).argmax(-1)
    visual = heads[torch.arange(3), best]
    scores = text @ visual.T
    labels = torch.arange(3)
    expected = (F.cross_entropy(scores / 0.07, labels) + F.cross_entropy(scores.T / 0.07, labels)) / 2 / 9
    got = model(images, captions=captions)["loss_infonce"]
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    assert sorted(model.state_dict()) == ["projection.hidden_layers.0.bias", "projection.hidden_layers.0.weight",
                                          "projection.linear_layer.bias", "projection.linear_layer.weight"]


def test_training_lowers_the_loss_and_resume_equals_an_uninterrupted_run(setup, tmp_path):
    root, clip_json, data = setup
    torch.set_num_threads(2)
    full = run(tiny_config(clip_json, data, tmp_path / "full", max_iters=6, checkpoint_interval=3,
                           cache_visual=True))
    history = losses(full)
    assert len(history) == 6 and history[-1] < history[0] and history[-1] == min(history), history
    cut = tiny_config(clip_json, data, tmp_path / "cut", max_iters=6, checkpoint_interval=3, cache_visual=True)
    run(cut, stop_after=3)
    assert (tmp_path / "cut" / "iter_3.pth").is_file() and not (tmp_path / "cut" / "iter_6.pth").exists()
    resumed = run(cut, resume=True)  # a fresh process's view: an empty visual cache
    assert resumed.iter == 6
    assert losses(resumed)[-3:] == history[-3:]  # the same next losses, bit for bit
    a = torch.load(tmp_path / "full" / "iter_6.pth", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "cut" / "iter_6.pth", map_location="cpu", weights_only=False)
    assert all(k.startswith("projection.") for k in a["state_dict"])  # CLIP and DINO are not saved
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


def test_exported_projection_loads_into_the_talk2dino_head(setup, tmp_path):
    from ovdense.heads.talk2dino import Talk2DINOHead, TextProjection

    _, clip_json, data = setup
    runner = run(tiny_config(clip_json, data, tmp_path, max_iters=2, checkpoint_interval=2))
    path = tmp_path / "talk2dino_last.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(state) == ["hidden_layers.0.bias", "hidden_layers.0.weight", "linear_layer.bias",
                             "linear_layer.weight"]  # the official vitb_mlp_infonce.pth layout, nothing else
    trainer = runner.model
    head = Talk2DINOHead(checkpoint=str(path))
    assert (head.projection.clip_dim, head.projection.dino_dim) == (24, 32)
    text = trainer.clip.encode_text(["a red circle", "water", "two blue bars"])
    with torch.no_grad():
        mine = F.normalize(trainer.projection(text), dim=-1, eps=1e-6)
        theirs = head.project_text(text)
    assert torch.equal(mine, theirs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the trainer's initialisation (projection seed 0)
        initial = TextProjection(24, 32)
    assert not torch.equal(initial.linear_layer.weight, head.projection.linear_layer.weight)  # it trained


def test_configs_build(setup):
    """configs/train/talk2dino_world_v2.py builds its model and dataset from the fixtures; the published
    recipe's config names local files only."""
    from mmengine.config import Config

    from ovdense.registry import DATASETS, TRAINING_MODELS, build

    cfg = Config.fromfile(str(REPO / "configs" / "train" / "talk2dino_world_v2.py"))
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        model = build(TRAINING_MODELS, cfg.model.to_dict())
        ds = build(DATASETS, cfg.train_dataloader.dataset.to_dict())
    finally:
        os.chdir(cwd)
    assert (model.projection.clip_dim, model.projection.dino_dim) == (128, 96) and len(ds) == 2000
    vitb = Config.fromfile(str(REPO / "configs" / "train" / "talk2dino_vitb.py"))
    assert vitb.model.dino.output == "tokens+cls_attn" and vitb.model.temperature == 0.07
    paths = [vitb.model.clip.pretrained, vitb.model.dino.weights, vitb.train_dataloader.dataset.ann_file]
    assert all(p.startswith(("checkpoints/", "data/")) for p in paths)
