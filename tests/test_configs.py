"""The shipped configs under configs/: they parse, name existing class files with the right
class counts, stay one ``_base_`` level deep, and build a working OVSegmenter per head."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import ovdense
from ovdense.config import load_config, resolve_names_path, segmenter_kwargs
from ovdense.text.vocabulary import read_name_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TINY_CLIP = REPO / "tests" / "fixtures" / "goldens" / "tiny_openai_clip.pt"

HEADS = ("maskclip", "sclip", "clearclip", "naclip", "vanilla")
NUM_CLASSES = {"voc21": 21, "voc20": 20, "context60": 60, "context59": 59, "coco_object": 81,
               "coco_stuff164k": 171, "cityscapes": 19, "ade20k": 150}
WITH_BACKGROUND = {"voc21", "context60", "coco_object"}

LEAVES = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)
BASES = sorted((CONFIGS / "_base_").glob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def _base_entries(path: Path):
    """The ``_base_`` value of a config file, read without executing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def test_every_head_has_every_dataset():
    found = {_rel(p) for p in LEAVES}
    expected = {f"{h}/{h}_{d}.py" for h in HEADS for d in NUM_CLASSES}
    assert expected <= found, sorted(expected - found)
    assert {p.stem for p in BASES} >= set(HEADS)


@pytest.mark.parametrize("path", BASES, ids=_rel)
def test_bases_have_no_base(path):
    assert _base_entries(path) == [], f"{_rel(path)}: base configs must not inherit"


@pytest.mark.parametrize("path", LEAVES, ids=_rel)
def test_leaf_config(path):
    bases = _base_entries(path)
    assert len(bases) == 1, f"{_rel(path)}: exactly one _base_ expected, got {bases}"
    base = (path.parent / bases[0]).resolve()
    assert base.parent == (CONFIGS / "_base_").resolve() and base.is_file()
    assert _base_entries(base) == [], "only one _base_ level is allowed"
    assert path.read_text().startswith("#"), "a leaf config starts with a comment naming its published number"

    cfg = load_config(path)
    kwargs = segmenter_kwargs(cfg)
    head = path.parent.name
    assert path.stem.startswith(head + "_")
    head_type = kwargs["head"]["type"] if isinstance(kwargs["head"], dict) else kwargs["head"]
    assert head_type in ovdense.list_heads()
    assert kwargs["backbone"]["clip_model"] == "ViT-B-16" and kwargs["backbone"]["pretrained"] == "openai"

    dataset = cfg.get("dataset_type")
    assert path.stem == f"{head}_{dataset}" and dataset in NUM_CLASSES
    spec = cfg["classes"]
    names = resolve_names_path(spec["names"], cfg)
    assert Path(names).is_file(), f"{_rel(path)}: missing name file {spec['names']}"
    groups = read_name_file(names)
    assert len(groups) == NUM_CLASSES[dataset]
    vocab = ovdense.build_vocabulary(names, spec.get("background"))
    assert vocab.num_classes == NUM_CLASSES[dataset]
    assert vocab.has_background == (dataset in WITH_BACKGROUND)
    if dataset in WITH_BACKGROUND:
        assert spec["background"] == "first"


def test_name_files_parse():
    for path in sorted((CONFIGS / "names").glob("*.txt")):
        assert read_name_file(path), path
    bg = read_name_file(CONFIGS / "names" / "cls_voc21.txt")[0]
    assert len(bg) == 26 and bg[0] == "sky" and bg[-1] == "fence"
    assert read_name_file(CONFIGS / "names" / "cls_coco_object.txt")[0] == bg
    assert read_name_file(CONFIGS / "names" / "cls_context60.txt")[0] == ["background"]
    assert read_name_file(CONFIGS / "names" / "cls_voc21_plain.txt")[0] == ["background"]


@pytest.fixture(scope="module")
def tiny_backbone():
    if not TINY_CLIP.is_file():
        pytest.skip(f"tiny CLIP checkpoint not found at {TINY_CLIP} (tests/fixtures/goldens)")
    return ovdense.CLIPBackbone.load(None, str(TINY_CLIP))


@pytest.mark.parametrize("head", HEADS)
def test_build_and_predict_per_head(head, tiny_backbone):
    # VOC21 exercises background + synonyms (+ area rule, PAMR, whole image, padding per head).
    path = CONFIGS / head / f"{head}_voc21.py"
    cfg = load_config(path)
    kwargs = segmenter_kwargs(cfg)
    kwargs.pop("backbone")
    seg = ovdense.OVSegmenter(**kwargs, backbone=tiny_backbone, device="cpu")
    names = resolve_names_path(cfg["classes"]["names"], cfg)
    bg = cfg["classes"]["background"]
    q = ovdense.build_vocabulary(names, bg).num_queries
    torch.manual_seed(0)
    seg.set_classes(names, background=bg, embeddings=torch.randn(q, tiny_backbone.embed_dim))
    assert seg.vocabulary.num_classes == 21
    res = seg.predict(np.zeros((60, 80, 3), np.uint8))
    label = np.asarray(res.label_map)
    assert label.shape == (60, 80)
    assert label.min() >= 0 and label.max() < 21


@pytest.mark.parametrize("path", LEAVES, ids=_rel)
def test_every_leaf_builds(path, tiny_backbone):
    kwargs = segmenter_kwargs(load_config(path))
    kwargs.pop("backbone")
    seg = ovdense.OVSegmenter(**kwargs, backbone=tiny_backbone, device="cpu")
    assert seg.preprocessor.scale is not None


def test_config_sections_are_constructor_arguments(tiny_backbone, tmp_path):
    """Unknown keys fail in the stage's constructor, unknown sections and the 0.1 layout fail
    in the reader, each naming what is wrong."""
    base = dict(backbone=tiny_backbone, device="cpu")
    with pytest.raises(TypeError, match="decode.*logit_scal"):
        ovdense.OVSegmenter(**base, decode=dict(logit_scal=40.0))
    with pytest.raises(TypeError, match="windows.*strid"):
        ovdense.OVSegmenter(**base, windows=dict(crop=64, strid=32))
    with pytest.raises(TypeError, match="PAMR.*iterations"):
        ovdense.OVSegmenter(**base, refiners=[dict(type="pamr", iterations=3)])
    bad = tmp_path / "bad.py"
    bad.write_text("head = dict(type='sclip')\ndecoder = dict(logit_scale=40.0)\n")
    with pytest.raises(KeyError, match="unknown config section 'decoder'"):
        segmenter_kwargs(load_config(bad))
    old = tmp_path / "old.py"
    old.write_text("model = dict(head=dict(type='sclip'))\nprotocol = dict(slide_crop=0)\n")
    with pytest.raises(KeyError, match="0.1 config layout"):
        segmenter_kwargs(load_config(old))


def test_mean_and_std_follow_the_weights(tiny_backbone):
    """CLIP's own mean/std give the reference methods' constants; other weights' configs are read."""
    from ovdense.preprocess import CLIP_MEAN, CLIP_STD

    seg = ovdense.OVSegmenter(backbone=tiny_backbone, device="cpu")
    assert seg.preprocessor.mean == CLIP_MEAN and seg.preprocessor.std == CLIP_STD
    visual = tiny_backbone.model.visual
    saved = getattr(visual, "preprocess_cfg", None)
    visual.preprocess_cfg = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    try:
        other = ovdense.OVSegmenter(backbone=tiny_backbone, device="cpu")
    finally:
        visual.preprocess_cfg = saved
    assert other.preprocessor.mean == (127.5, 127.5, 127.5) and other.preprocessor.std == (63.75, 63.75, 63.75)
    fixed = ovdense.OVSegmenter(backbone=tiny_backbone, device="cpu", preprocess=dict(mean=(1, 2, 3), std=(4, 5, 6)))
    assert fixed.preprocessor.mean == (1, 2, 3)


OFFICIAL_REPOS = {"maskclip": "https://github.com/chongzhou96/MaskCLIP", "sclip": "https://github.com/wangf3014/SCLIP",
                  "clearclip": "https://github.com/mc-lan/ClearCLIP", "naclip": "https://github.com/sinahmr/NACLIP",
                  "vanilla": "https://github.com/wangf3014/SCLIP"}


def test_configs_refer_to_nothing_outside_the_repository():
    """The configs are self-contained: no absolute paths of the development machine, no
    document the package does not ship."""
    files = [p for p in CONFIGS.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".txt")]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        for banned in ("/work/", "shared/", "methods.md"):
            assert banned not in text, f"{_rel(path)} mentions {banned!r}"


@pytest.mark.parametrize("path", LEAVES + BASES, ids=_rel)
def test_every_config_names_its_paper_and_official_repository(path):
    head = path.stem if path.parent.name == "_base_" else path.parent.name
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    header = "\n".join(header)
    assert OFFICIAL_REPOS[head] in header, _rel(path)
    assert "ECCV 2022" in header or "ECCV 2024" in header or "WACV 2025" in header, _rel(path)
