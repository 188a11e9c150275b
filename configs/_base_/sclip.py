# SCLIP base protocol.
# Paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
# Official code: https://github.com/wangf3014/SCLIP (protocol read at commit b56bd30).
# Default protocol from SCLIP's configs/cfg_*.py and clip_segmentor.py: short side 336,
# sliding window 224 / stride 112, no padding (the patch embedding floors), no PAMR,
# softmax(40 * cos) over all queries. Per-dataset changes live in the leaf configs.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='sclip')
preprocess = dict(short_side=336)
windows = dict(
    crop=224,
    stride=112,
    pad_to=0,
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
)
