# Vanilla CLIP baseline (unmodified last block, q-k attention, residual + MLP kept),
# evaluated under the SCLIP protocol (methods.md section 3) so it is comparable with sclip/*.
model = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    head=dict(type='vanilla'),
    pos_interp='scale_factor',
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
