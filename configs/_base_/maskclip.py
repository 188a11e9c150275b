# MaskCLIP base protocol.
# Paper: MaskCLIP: "Extract Free Dense Labels from CLIP" (Zhou, Loy and Dai, ECCV 2022).
# Official code: https://github.com/chongzhou96/MaskCLIP (protocol read at commit 245d31f).
# Default = the protocol of MaskCLIP's own repo (no background class; published there only for
# VOC20, PC59 and COCO-Stuff): whole-image inference (test_cfg mode='whole'), short side 512
# (mmcv img_scale=(2048, 512)), bicubic positional-embedding resize with size= (mmseg resize),
# 85 prompt templates (the 80 ImageNet ones + 5 "... in the scene"; prompt_engineering.py),
# argmax of the raw cosines (logit_scale has no effect without thresholds; kept at 40).
# Differences we do NOT reproduce (protocol note only): the repo runs its own mmseg ViT port
# with exact GELU and LayerNorm eps 1e-6 and normalises with ImageNet mean/std
# ([123.675, 116.28, 103.53] / [58.395, 57.12, 57.375]); we keep CLIP's own weights
# (QuickGELU, eps 1e-5) and CLIP's mean/std. Its class-name lists (prompt_engineering.py) were
# not available to us; the SCLIP lists are used instead.
# Datasets MaskCLIP's repo does not report (VOC21, PC60, COCO-Object, Cityscapes, ADE20K) use
# the SCLIP protocol in their leaf configs, as the SCLIP paper's MaskCLIP re-run did.
_MASKCLIP_TEMPLATES = [
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
    'there is a {} in the scene.',
    'there is the {} in the scene.',
    'this is a {} in the scene.',
    'this is the {} in the scene.',
    'this is one {} in the scene.',
]

backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='size',
)
head = dict(type='maskclip')
preprocess = dict(short_side=512)
windows = dict(
    crop=0,
    stride=112,
    pad_to=0,
)
text_encoder = dict(templates=_MASKCLIP_TEMPLATES)
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
)
