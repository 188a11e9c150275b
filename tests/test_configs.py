"""The shipped configs under configs/: they parse, name existing class files with the right
class counts, stay one ``_base_`` level deep, and build a working OVSegmenter per head."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ovdense
from ovdense.config import load_config, resolve_names_path, segmenter_kwargs
from ovdense.text.vocabulary import read_name_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TINY_CLIP = REPO / "tests" / "fixtures" / "goldens" / "tiny_openai_clip.pt"
TINY_SAM = REPO / "tests" / "fixtures" / "synth_sam" / "model.json"

HEADS = ("maskclip", "sclip", "clearclip", "naclip", "vanilla", "proxyclip", "cass", "trident", "corrclip", "dinoiser",
         "talk2dino", "ovstitcher")
#: Config folders of a head under another CLIP than OpenAI ViT-B/16: folder -> (clip_model, pretrained).
OTHER_CLIP = {"corrclip_metaclip": ("ViT-B-16-quickgelu", "metaclip_fullcc"),
              "dinoiser": ("ViT-B-16", "laion2b_s34b_b88k")}
NUM_CLASSES = {"voc21": 21, "voc20": 20, "context60": 60, "context59": 59, "coco_object": 81,
               "coco_stuff164k": 171, "cityscapes": 19, "ade20k": 150}
WITH_BACKGROUND = {"voc21", "context60", "coco_object"}

#: configs/train/ holds mmengine Runner configs (tools/train_head.py), not segmenter protocols; tests/test_train_head.py
#: covers them.
LEAVES = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts and p.parent.name != "train")
#: Shipped configs that are not a benchmark protocol (no dataset, no published number).
NOT_PROTOCOLS = {"latency/latency_640x480.py", "synthetic/sam_detect_world_v2.py"}
BASES = sorted((CONFIGS / "_base_").glob("*.py"))

#: Tiny stand-ins for the feature providers of the shipped configs, by patch size (the configs
#: name local checkpoints the tests never read).
TINY_PROVIDERS = {
    8: dict(type="timm_vit", model_name="vit_small_patch8_224",
            model_kwargs=dict(depth=2, embed_dim=32, num_heads=2)),
    16: dict(type="timm_vit", model_name="vit_small_patch16_224",
             model_kwargs=dict(depth=2, embed_dim=48, num_heads=2)),
    14: dict(type="timm_vit", model_name="vit_small_patch14_reg4_dinov2",
             model_kwargs=dict(depth=2, embed_dim=48, num_heads=2, img_size=56)),
}


def _tiny_features(features):
    """A config's ``features`` with every provider replaced by a tiny one of the same patch size
    (and the same ``pos_interp``, ``output``, ``denorm``, ``square_input``), built from random weights."""
    out = {}
    for name, spec in (features or {}).items():
        if spec["type"] == "sam":  # the synthetic config's tiny SAM fixture is already tiny; others become it
            out[name] = spec if "model_config" in spec else dict(type="sam", model_config=str(TINY_SAM))
            continue
        if spec["type"] == "regions":  # region maps are read lazily, per image
            out[name] = spec
            continue
        assert spec["type"] in ("timm_vit", "stitched_vit"), f"no tiny stand-in for provider type {spec['type']!r}"
        patch = int(spec["model_name"].split("patch")[1].split("_")[0])
        tiny = dict(TINY_PROVIDERS[patch], type=spec["type"])
        # what the provider computes stays
        for key in ("pos_interp", "output", "denorm", "square_input", "input_size", "resize_mode"):
            if key in spec:
                tiny[key] = spec[key]
        out[name] = tiny
    return out


def _tiny_kwargs(cfg):
    """segmenter_kwargs of a config, without the backbone and with tiny providers."""
    kwargs = segmenter_kwargs(cfg)
    kwargs.pop("backbone")
    if isinstance(kwargs["head"], dict) and kwargs["head"].get("type") == "dinoiser":
        # no trained convolutions (random ones), and block -2 of the 3-block tiny CLIP in place of block -3
        kwargs["head"] = dict({k: v for k, v in kwargs["head"].items() if k != "checkpoint"}, feats_idx=-2)
    if isinstance(kwargs["head"], dict) and kwargs["head"].get("type") == "talk2dino":
        # a random projection from the tiny CLIP's 64 to the tiny patch-14 provider's 48 channels
        kwargs["head"] = dict({k: v for k, v in kwargs["head"].items() if k != "checkpoint"},
                              projection=dict(clip_dim=64, dino_dim=48))
    if "features" in kwargs:
        kwargs["features"] = _tiny_features(kwargs["features"])
    if (kwargs.get("text_encoder") or {}).get("extra_prompts"):  # OV-Stitcher's template file is not shipped
        kwargs["text_encoder"] = {k: v for k, v in kwargs["text_encoder"].items() if k != "extra_prompts"}
    return kwargs


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
    if _rel(path) in NOT_PROTOCOLS:
        pytest.skip(f"{_rel(path)} is a deployment or synthetic config, not a benchmark protocol: no dataset_type, "
                    f"no class count")
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
    clip = (kwargs["backbone"]["clip_model"], kwargs["backbone"]["pretrained"])
    assert clip == OTHER_CLIP.get(head, ("ViT-B-16", "openai")), clip

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
def test_build_and_predict_per_head(head, tiny_backbone, tmp_path):
    # VOC21 exercises background + synonyms (+ area rule, PAMR, whole image, padding per head).
    path = CONFIGS / head / f"{head}_voc21.py"
    cfg = load_config(path)
    kwargs = _tiny_kwargs(cfg)
    image = np.zeros((60, 80, 3), np.uint8)
    if "regions" in kwargs.get("features", {}):  # CorrCLIP: a region map file next to the image
        kwargs["features"]["regions"] = dict(kwargs["features"]["regions"], directory=str(tmp_path))
        regions = np.zeros((60, 80), np.int32)
        regions[10:40, 20:60], regions[45:, :30] = 3, 5
        np.savez(tmp_path / "image.npz", instance_mask=regions)
        Image.fromarray(image).save(tmp_path / "image.png")
        image = tmp_path / "image.png"
    seg = ovdense.OVSegmenter(**kwargs, backbone=tiny_backbone, device="cpu")
    names = resolve_names_path(cfg["classes"]["names"], cfg)
    bg = cfg["classes"]["background"]
    q = ovdense.build_vocabulary(names, bg).num_queries
    torch.manual_seed(0)
    seg.set_classes(names, background=bg, embeddings=torch.randn(q, tiny_backbone.embed_dim))
    assert seg.vocabulary.num_classes == 21
    res = seg.predict(image)
    label = np.asarray(res.label_map)
    assert label.shape == (60, 80)
    assert label.min() >= 0 and label.max() < 21


@pytest.mark.parametrize("path", LEAVES, ids=_rel)
def test_every_leaf_builds(path, tiny_backbone):
    seg = ovdense.OVSegmenter(**_tiny_kwargs(load_config(path)), backbone=tiny_backbone, device="cpu")
    if _rel(path) not in NOT_PROTOCOLS:  # every published protocol resizes its images
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
                  "vanilla": "https://github.com/wangf3014/SCLIP", "proxyclip": "https://github.com/mc-lan/ProxyCLIP",
                  "cass": "https://github.com/MICV-yonsei/CASS", "trident": "https://github.com/YuHengsss/Trident",
                  "corrclip": "https://github.com/zdk258/CorrCLIP", "corrclip_metaclip": "https://github.com/zdk258/CorrCLIP",
                  "dinoiser": "https://github.com/wysoczanska/clip_dinoiser",
                  "talk2dino": "https://github.com/lorebianchi98/Talk2DINO",
                  "ovstitcher": "https://github.com/atw617/OV-Stitcher"}


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
    if _rel(path) in NOT_PROTOCOLS:
        pytest.skip(f"{_rel(path)} is not a published protocol: its folder is no method")
    head = path.stem if path.parent.name == "_base_" else path.parent.name
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    header = "\n".join(header)
    assert OFFICIAL_REPOS[head] in header, _rel(path)
    venues = ("ECCV 2022", "ECCV 2024", "WACV 2025", "CVPR 2025", "ICCV 2025", "CVPR 2026")
    assert any(venue in header for venue in venues), _rel(path)


PROXYCLIP_THRESHOLDS = {"voc21": 0.2, "context60": 0.15, "coco_object": 0.25}


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_proxyclip_configs_follow_the_official_protocol(dataset):
    """mc-lan/ProxyCLIP configs/cfg_*.py + proxyclip_segmentor.py defaults: DINO ViT-B/8 proxy
    (official position interpolation), crop 336 / stride 112 (Cityscapes 224 / 112) padded to 56,
    short side 336 (ADE20K, Cityscapes 448), scale 40, prob_thd as the background threshold."""
    cfg = load_config(CONFIGS / "proxyclip" / f"proxyclip_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    assert kw["head"] == dict(type="proxyclip", beta=1.2, gamma=3.0)
    assert kw["backbone"]["pos_interp"] == "scale_factor"
    vfm = kw["features"]["vfm"]
    assert vfm["type"] == "timm_vit" and vfm["model_name"] == "vit_base_patch8_224.dino"
    assert vfm["pos_interp"] == "dino" and vfm["weights"] == "checkpoints/dino_vitbase8_pretrain.pth"
    assert kw["preprocess"]["short_side"] == (448 if dataset in ("ade20k", "cityscapes") else 336)
    crop = 224 if dataset == "cityscapes" else 336
    assert kw["windows"] == dict(crop=crop, stride=112, pad_to=56)
    assert kw["text_encoder"]["templates"] == "openai80" and kw["refiners"] == []
    assert kw["decode"] == dict(logit_scale=40.0, background_threshold=PROXYCLIP_THRESHOLDS.get(dataset, 0.0),
                                area_threshold=None, renormalize=False)


#: atw617/OV-Stitcher configs/cfg_*.py: dataset -> (short side, crop, stride, prob_thd).
OVSTITCHER = {"voc21": (448, 336, 112, 0.1), "voc20": (448, 336, 112, 0.0), "context60": (448, 336, 112, 0.1),
              "context59": (448, 336, 112, 0.0), "coco_object": (448, 336, 112, 0.2),
              "coco_stuff164k": (448, 336, 224, 0.0), "ade20k": (448, 336, 112, 0.0),
              "cityscapes": (560, 224, 112, 0.0)}


@pytest.mark.parametrize("dataset", sorted(OVSTITCHER))
def test_ovstitcher_configs_follow_the_official_protocol(dataset):
    """OV-Stitcher's configs (resize scale (2048, short), slide_crop / slide_stride, prob_thd) and its
    segmentor's defaults: stitched DINO ViT-B/8, CorrCLIP's regions and map correction, scale 40,
    80 templates plus the class-biased ones (template_path in base_config.py)."""
    short, crop, stride, thd = OVSTITCHER[dataset]
    kw = segmenter_kwargs(load_config(CONFIGS / "ovstitcher" / f"ovstitcher_{dataset}.py"))
    assert kw["head"] == dict(type="ovstitcher", dino="stitched_dino", regions="regions", tau=4.0, alpha=1.0, beta=0.5,
                              merge_eps=0.2)
    dino = kw["features"]["stitched_dino"]
    assert dino == dict(type="stitched_vit", model_name="vit_base_patch8_224.dino",
                        weights="checkpoints/dino_vitbase8_pretrain.pth", pos_interp="dino")
    folder = {"voc21": "voc", "voc20": "voc", "context60": "context", "context59": "context", "coco_object": "coco",
              "coco_stuff164k": "coco", "ade20k": "ade", "cityscapes": "city"}[dataset]
    assert kw["features"]["regions"] == dict(type="regions", directory=f"data/region_masks/{folder}")
    assert kw["preprocess"]["short_side"] == short and kw["windows"] == dict(crop=crop, stride=stride, pad_to=56)
    assert kw["text_encoder"] == dict(templates="openai80", extra_prompts="prompts/class_biased_template.json")
    assert kw["decode"]["background_threshold"] == thd and kw["decode"]["logit_scale"] == 40.0
    assert [r["type"] for r in kw["decode"]["rules"]] == ["region_mode"]


def test_proxyclip_name_files():
    """ProxyCLIP's own lists where they differ from SCLIP's: plain person / tvmonitor, and a
    17-word COCO-Object background."""
    names = CONFIGS / "names"
    voc21, voc20 = read_name_file(names / "cls_voc21_proxyclip.txt"), read_name_file(names / "cls_voc20_proxyclip.txt")
    assert voc21[0] == read_name_file(names / "cls_voc21.txt")[0] and voc21[1:] == voc20
    assert voc20[14] == ["person"] and voc20[19] == ["tvmonitor"]
    sclip20 = read_name_file(names / "cls_voc20.txt")
    others = [g for i, g in enumerate(voc20) if i not in (14, 19)]
    assert others == [g for i, g in enumerate(sclip20) if i not in (14, 19)]
    obj = read_name_file(names / "cls_coco_object_proxyclip.txt")
    assert len(obj[0]) == 17 and obj[0][-1] == "rail" and obj[1] == ["person"]
    assert obj[2:] == read_name_file(names / "cls_coco_object.txt")[2:]


@pytest.mark.parametrize("size", [(336, 336), (300, 336), (336, 301), (250, 100), (224, 224), (57, 55)])
def test_windows_padding_is_proxyclip_compute_padsize(size):
    """ovdense's centred padding (pad_to=56) equals the official ``compute_padsize(H, W, 56)``."""
    from ovdense.ops.windows import SlidingWindows

    def compute_padsize(h, w, p):  # the official rule, restated
        lr = p - w % p if w % p else 0
        tb = p - h % p if h % p else 0
        return lr // 2, lr - lr // 2, tb // 2, tb - tb // 2

    _, pad = SlidingWindows(crop=336, stride=112, pad_to=56).plan(size)
    assert pad == compute_padsize(min(size[0], 336), min(size[1], 336), 56)


def test_proxyclip_is_listed_and_builds_from_config():
    """``ovdense configs`` lists them; from_config builds the VOC21 one (classes and all) with a tiny
    random CLIP (real tokenizer) and a tiny provider in place of the DINO checkpoint."""
    from conftest import TINY_CONFIG
    from ovdense.config import list_configs

    listed = list_configs()
    assert "_base_/proxyclip" in listed
    assert {f"proxyclip_{d}" for d in NUM_CLASSES} <= set(listed)
    torch.manual_seed(0)
    seg = ovdense.OVSegmenter.from_config(str(CONFIGS / "proxyclip" / "proxyclip_voc21.py"),
                                          backbone=dict(clip_model=str(TINY_CONFIG), pretrained=None),
                                          features=dict(vfm=dict(TINY_PROVIDERS[8], pos_interp="dino")), device="cpu")
    assert seg.features["vfm"].pos_interp == "dino"
    assert seg.vocabulary.num_classes == 21 and seg.vocabulary.num_queries == 26 + 20
    label = np.asarray(seg.predict(np.zeros((40, 50, 3), np.uint8)).label_map)
    assert label.shape == (40, 50) and label.max() < 21


#: MICV-yonsei/CASS configs/cfg_*.py: (global_semantics_weight, mean_vector_weight, h_threshold).
CASS_WEIGHTS = {"voc21": (0.1, 0.03, 0.10), "voc20": (0.4, 0.02, 0.10), "context60": (0.25, 0.04, 0.09),
                "context59": (0.25, 0.04, 0.09), "coco_object": (0.25, 0.01, 0.10),
                "coco_stuff164k": (0.2, 0.02, 0.02), "cityscapes": (0.1, 0.03, 0.14), "ade20k": (0.3, 0.05, 0.06)}
CASS_THRESHOLDS = {"voc21": 0.1, "context60": 0.1, "coco_object": 0.1}


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_cass_configs_follow_the_official_protocol(dataset):
    """MICV-yonsei/CASS configs/cfg_*.py + cass_segmentor.py defaults + eval_all.sh (--pamr off): DINO
    ViT-B/8 last-block keys (official DINO input: denormalised with the std typo, squared), window
    224 / 112 (VOC21 whole image), short side 336 (Cityscapes 560), scale 40, prob_thd as the
    background threshold, per-dataset prior weights, no singular stretch for VOC20 / Cityscapes,
    window-level CLS prior for Cityscapes."""
    cfg = load_config(CONFIGS / "cass" / f"cass_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    gw, mvw, h = CASS_WEIGHTS[dataset]
    head = dict(type="cass", gaussian_std=5.0, global_weight=gw, mean_vector_weight=mvw, h_threshold=h)
    if dataset in ("voc20", "cityscapes"):
        head["scale_singular"] = False
    if dataset == "cityscapes":
        head["global_source"] = "window"
    assert kw["head"] == head
    assert kw["backbone"]["pos_interp"] == "scale_factor"
    assert kw["features"]["dino"] == dict(type="timm_vit", model_name="vit_base_patch8_224.dino",
                                          weights="checkpoints/dino_vitbase8_pretrain.pth", pos_interp="dino",
                                          output="k", denorm="cass_official", square_input=True)
    assert kw["preprocess"]["short_side"] == (560 if dataset == "cityscapes" else 336)
    assert kw["windows"] == (dict(crop=0, stride=112) if dataset == "voc21" else dict(crop=224, stride=112))
    assert kw["text_encoder"]["templates"] == "openai80" and kw["refiners"] == []
    assert kw["decode"] == dict(logit_scale=40.0, background_threshold=CASS_THRESHOLDS.get(dataset, 0.0),
                                area_threshold=None, renormalize=False)


#: YuHengsss/Trident configs/cfg_*.py: (short side, prob_thd, head overrides, window stride).
TRIDENT = {"voc21": (448, 0.2, {}, 224), "context60": (576, 0.15, {}, 224), "coco_object": (448, 0.25, {}, 224),
           "voc20": (336, 0.0, dict(cos_fac=0.0), 112), "context59": (576, 0.0, {}, 224),
           "coco_stuff164k": (448, 0.0, {}, 224),
           "cityscapes": (688, 0.0, dict(cos_fac=3.0, refine_neg_cos=False, split_halves=True), 224),
           "ade20k": (576, 0.0, dict(refine_neg_cos=False), 224)}


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_trident_configs_follow_the_official_protocol(dataset):
    """YuHengsss/Trident configs/cfg_*.py + configs/base_config.py + trident.py defaults: DINO ViT-B/16
    (official position interpolation) and SAM ViT-B, window 336 / stride 224 (VOC20 112), the
    mmseg short side then preprocess_image's fit to multiples of 16 (at least 336), scale 40,
    prob_thd as the background threshold, per-dataset cos_fac / refine_neg_cos, Cityscapes halves, then
    the official --sam_refine (README's evaluation) as the decoder rule trident_sam_refine."""
    cfg = load_config(CONFIGS / "trident" / f"trident_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    short, thd, head, stride = TRIDENT[dataset]
    assert kw["head"] == {**dict(type="trident", beta=1.2, gamma=3.0, cos_fac=1.2, refine_neg_cos=True), **head}
    assert kw["features"]["dino"] == dict(type="timm_vit", model_name="vit_base_patch16_224.dino",
                                          weights="checkpoints/dino_vitbase16_pretrain.pth", pos_interp="dino")
    assert kw["features"]["sam"] == dict(type="sam", model_type="vit_b", checkpoint="checkpoints/sam_vit_b_01ec64.pth")
    assert kw["preprocess"] == dict(short_side=short, multiple_of=16, min_fit=336)
    assert kw["windows"] == dict(crop=336, stride=stride)
    assert kw["text_encoder"]["templates"] == "openai80" and kw["refiners"] == []
    assert kw["decode"] == dict(logit_scale=40.0, background_threshold=thd, area_threshold=None, renormalize=False,
                                rules=[dict(type="trident_sam_refine", sam="sam", coarse_thresh=0.10, minimal_area=225,
                                            sam_mask_coff=0.005, sam_iou_thresh=0.9)])


CORRCLIP_THRESHOLDS = {"voc21": 0.2, "context60": 0.15, "coco_object": 0.25}
CORRCLIP_REGIONS = {"voc21": "voc", "voc20": "voc", "context60": "context", "context59": "context",
                    "coco_object": "coco", "coco_stuff164k": "coco", "cityscapes": "city", "ade20k": "ade"}


@pytest.mark.parametrize("folder", ["corrclip", "corrclip_metaclip"])
@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_corrclip_configs_follow_the_official_protocol(dataset, folder):
    """zdk258/CorrCLIP CorrCLIPv1 configs/cfg_*.py + base_config.py + corrclip_segmentor.py: DINO
    ViT-B/8 q+k (official position interpolation), the published region maps by dataset, crop
    336 / stride 112 (Cityscapes 224 / 112) padded to 56, short side 336 (ADE20K, Cityscapes 448),
    scale 40, prob_thd as the background threshold, then the map correction; CorrCLIP's name files."""
    cfg = load_config(CONFIGS / folder / f"{folder}_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    assert kw["head"] == dict(type="corrclip", dino="dino", regions="regions", tau=4.0, alpha=1.0, beta=0.5,
                              merge_eps=0.2)
    assert kw["features"]["dino"] == dict(type="timm_vit", model_name="vit_base_patch8_224.dino",
                                          weights="checkpoints/dino_vitbase8_pretrain.pth", pos_interp="dino",
                                          output="q+k")
    assert kw["features"]["regions"] == dict(type="regions", directory=f"data/region_masks/{CORRCLIP_REGIONS[dataset]}")
    assert kw["preprocess"]["short_side"] == (448 if dataset in ("ade20k", "cityscapes") else 336)
    assert kw["windows"] == dict(crop=224 if dataset == "cityscapes" else 336, stride=112, pad_to=56)
    assert kw["text_encoder"]["templates"] == "openai80" and kw["refiners"] == []
    assert kw["decode"] == dict(logit_scale=40.0, background_threshold=CORRCLIP_THRESHOLDS.get(dataset, 0.0),
                                area_threshold=None, renormalize=False,
                                rules=[dict(type="region_mode", regions="regions")])
    assert cfg["classes"]["names"].endswith("_corrclip.txt")


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_dinoiser_configs_follow_the_official_protocol(dataset):
    """wysoczanska/clip_dinoiser configs/clip_dinoiser.yaml + maskclip.yaml + main_eval.py +
    segmentation/configs/_base_/datasets/*.py: OpenCLIP LAION ViT-B-16, the local checkpoint, gamma 0.2
    on block -3, short side 448, slide 448 / 224 with black bottom/right padding to x16, OpenAI mean/std
    unrounded, softmax(100 cos) per window averaged (decode scale 1), 80 templates, FOUND only on VOC21
    and COCO-Object, the official datasets' class names."""
    cfg = load_config(CONFIGS / "dinoiser" / f"dinoiser_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    assert kw["backbone"] == dict(clip_model="ViT-B-16", pretrained="laion2b_s34b_b88k", pos_interp="size")
    assert kw["head"] == dict(type="dinoiser", checkpoint="checkpoints/clip_dinoiser_last.pt", gamma=0.2, feats_idx=-3,
                              window_scores="probabilities", prob_scale=100.0)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    assert kw["preprocess"]["short_side"] == 448
    np.testing.assert_allclose(kw["preprocess"]["mean"], np.array(mean) * 255, rtol=1e-8)
    np.testing.assert_allclose(kw["preprocess"]["std"], np.array(std) * 255, rtol=1e-8)
    assert kw["windows"] == dict(crop=448, stride=224, pad_to=16, pad_mode="end")
    assert kw["text_encoder"]["templates"] == "openai80" and kw["refiners"] == []
    found = [dict(type="found_background", delta=0.99, threshold=0.5)] if dataset in ("voc21", "coco_object") else []
    assert kw["decode"] == dict(logit_scale=1.0, background_threshold=0.0, area_threshold=None, renormalize=False,
                                rules=found)
    names = cfg["classes"]["names"]
    assert names.endswith("_dinoiser.txt") or dataset == "ade20k"
    if dataset == "voc21":
        lines = read_name_file(resolve_names_path(names, cfg))
        assert lines[0] == ["background"] and ["dining table"] in lines and ["tvmonitor"] in lines


@pytest.mark.parametrize("dataset", sorted(NUM_CLASSES))
def test_talk2dino_configs_follow_the_official_protocol(dataset):
    """lorebianchi98/Talk2DINO configs/<dataset>/dinotext_*_vitb_mlp_infonce.yml + eval_*_pamr.yml +
    segmentation/configs/_base_/datasets/*.py + dinotext.py: DINOv2 ViT-B/14-reg squashed to 448
    (bilinear) with torch.hub's position resize, the local projection checkpoint, the 7
    sub_imagenet templates averaged raw, short side 448, slide 448 / 224, PAMR (1, 2, 4, 8, 12, 24)
    x 10, softmax of the scores (scale 1); the constant background 0.55 and the background cleaning
    where the official configs set them; the mmseg / official dataset class names."""
    cfg = load_config(CONFIGS / "talk2dino" / f"talk2dino_{dataset}.py")
    kw = segmenter_kwargs(cfg)
    assert kw["backbone"] == dict(clip_model="ViT-B-16", pretrained="openai", pos_interp="scale_factor")
    assert kw["head"] == dict(type="talk2dino", checkpoint="checkpoints/talk2dino_vitb_mlp_infonce.pth",
                              bg_clean=dataset in ("voc21", "coco_object"), lambda_bg=0.2, act="tanh")
    assert kw["features"] == dict(dino=dict(
        type="timm_vit", model_name="vit_base_patch14_reg4_dinov2.lvd142m",
        weights="checkpoints/dinov2_vitb14_reg4_pretrain.pth", pos_interp="dino", output="tokens+cls_attn",
        input_size=(448, 448), resize_mode="bilinear"))
    assert kw["preprocess"] == dict(short_side=448) and kw["windows"] == dict(crop=448, stride=224)
    assert kw["text_encoder"] == dict(templates=[
        "itap of a {}.", "a bad photo of a {}.", "a origami {}.", "a photo of the large {}.", "a {} in a video game.",
        "art of the {}.", "a photo of the small {}."], average="raw")
    assert kw["refiners"] == [dict(type="pamr", steps=10, dilations=(1, 2, 4, 8, 12, 24))]
    assert kw["refine_at"] == "model"
    rules = [dict(type="constant_background", score=0.55)] if dataset in WITH_BACKGROUND else []
    assert kw["decode"] == dict(logit_scale=1.0, background_threshold=0.0, area_threshold=None, renormalize=False,
                                rules=rules)
    names = read_name_file(resolve_names_path(cfg["classes"]["names"], cfg))
    assert all(len(g) == 1 for g in names)  # one plain name per class, as the official class lists
    if dataset == "voc21":
        assert names[0] == ["background"] and ["diningtable"] in names and ["tvmonitor"] in names
