# NACLIP base protocol.
# Paper: NACLIP: "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary Semantic Segmentation" (Hajimiri, Ben Ayed and Dolz, WACV 2025).
# Official code: https://github.com/sinahmr/NACLIP (protocol read at commit 0cac3a6).
# Default protocol from NACLIP's naclip.py / configs/cfg_*.py: short side 336, sliding window
# 224 / stride 112 (VOC21/VOC20 override to a whole-image pass), softmax(40 * cos), PAMR with
# 10 iterations and dilations (8, 16) ON by default (applied to the raw cosines), and the
# probabilities renormalised after the max over synonyms (naclip.py postprocess_result).
# Class-name files are identical to SCLIP's.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='naclip', gaussian_std=5.0)
preprocess = dict(short_side=336)
windows = dict(
    crop=224,
    stride=112,
    pad_to=0,
)
text_encoder = dict(templates='openai80')
refiners = [dict(type='pamr', steps=10, dilations=(8, 16))]
# PAMR on the logits resized to the input image, as the official code does. For big photos,
# runtime = dict(refine_at='model') (or --refine-at model) runs it once at the model's resolution
# instead: far faster, but not the published protocol.
runtime = dict(refine_at='input')
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=True,
)
