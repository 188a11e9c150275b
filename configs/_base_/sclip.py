# SCLIP (Wang et al., ECCV 2024), wangf3014/SCLIP: methods.md section 3.
# Default protocol from SCLIP's configs/cfg_*.py and clip_segmentor.py: short side 336,
# sliding window 224 / stride 112, no padding (the patch embedding floors), no PAMR,
# softmax(40 * cos) over all queries. Per-dataset changes live in the leaf configs.
model = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    head=dict(type='sclip'),
    pos_interp='scale_factor',  # F.interpolate(scale_factor=(g + 0.1) / 14), as SCLIP's interpolate_pos_encoding
)
protocol = dict(
    short_side=336,
    slide_crop=224,
    slide_stride=112,
    pad_to=0,
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
    pamr_steps=0,
    pamr_dilations=(8, 16),
    templates='openai80',
)
