# Vanilla CLIP baseline (unmodified last block, q-k attention, residual + MLP kept),
# evaluated under the SCLIP protocol (_base_/sclip.py) so it is comparable with sclip/*.
# Protocol from SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
# Official code: https://github.com/wangf3014/SCLIP.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='vanilla')
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
