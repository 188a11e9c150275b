# NACLIP (Hajimiri et al., WACV 2025), sinahmr/NACLIP: methods.md section 5.
# Default protocol from NACLIP's naclip.py / configs/cfg_*.py: short side 336, sliding window
# 224 / stride 112 (VOC21/VOC20 override to a whole-image pass), softmax(40 * cos), PAMR with
# 10 iterations and dilations (8, 16) ON by default (applied to the raw cosines), and the
# probabilities renormalised after the max over synonyms (naclip.py postprocess_result).
# Class-name files are identical to SCLIP's.
model = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    head=dict(type='naclip', gaussian_std=5.0),
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
    renormalize=True,
    pamr_steps=10,
    pamr_dilations=(8, 16),
    templates='openai80',
)
