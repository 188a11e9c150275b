# ProxyCLIP base protocol.
# Paper: ProxyCLIP: "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary Segmentation" (Lan et al., ECCV 2024).
# Official code: https://github.com/mc-lan/ProxyCLIP (protocol read at commit e7b767f).
# Protocol (proxyclip_segmentor.py defaults + configs/base_config.py + configs/cfg_*.py): OpenAI
# ViT-B/16 with a DINO ViT-B/8 as the proxy VFM (the repo's default vfm_model='dino', loaded
# with torch.hub 'dino_vitb8'); beta 1.2, gamma 3.0; short side 336 (ADE20K, Cityscapes 448);
# sliding window 336 / stride 112 (Cityscapes 224 / 112), windows zero-padded (centred) to a
# multiple of 56; softmax(40 * cos) over all queries, max over synonyms, prob_thd as background
# threshold (VOC21 0.2, PC60 0.15, COCO-Object 0.25, else 0); 80 OpenAI templates; no PAMR.
# Features and logits live on the VFM's grid (window / 8), upsampled to the window.
#
# The VFM: the official DINO ViT-B/8 checkpoint (dino_vitbase8_pretrain.pth, the file torch.hub
# 'dino_vitb8' downloads), read from a local path; nothing is downloaded. The path below is
# relative to the working directory; give another with
#   --cfg-options features.vfm.weights=/path/to/dino_vitbase8_pretrain.pth
# (or from_config(..., features=dict(vfm=dict(type='timm_vit', ..., weights='/path/...')))).
# pos_interp='dino' resizes DINO's position embedding with DINO's own interpolate_pos_encoding
# formula, as the torch.hub model does (timm's resize differs by ~3e-2 on 336 px windows).
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='proxyclip', beta=1.2, gamma=3.0)
features = dict(
    vfm=dict(
        type='timm_vit',
        model_name='vit_base_patch8_224.dino',
        weights='checkpoints/dino_vitbase8_pretrain.pth',
        pos_interp='dino',
    ),
)
preprocess = dict(short_side=336)
windows = dict(
    crop=336,
    stride=112,
    pad_to=56,
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
)
