# OV-Stitcher base protocol, OpenAI ViT-B/16 (the repository default: clip_type='openai', ViT-B/16).
# Paper: "OV-Stitcher" (CVPR 2026 Findings). Official code: https://github.com/atw617/OV-Stitcher
# (protocol read at commit 91a9489: ov_stitcher_segmentor.py, open_clip/transformer.py, configs/).
# Protocol: CorrCLIP's three branches (DINO-scoped value mixing of the last block, a spatial branch over
# 5 lower blocks, region class tokens) computed on the whole image with the sliding windows stitched:
# DINO ViT-B/8's last block attends across all windows (provider 'stitched_vit'), the spatial branch's
# blocks re-run on the stitched tokens, the region tokens painted per window and stitched. Short side
# 448 (Cityscapes 560); windows 336 / stride 112 (COCO-Stuff stride 224, Cityscapes 224 / 112), padded
# (centred) to a multiple of 56; softmax(40 * cos) over all queries, max over the background's names,
# prob_thd as background threshold (VOC21 0.1, PC60 0.1, COCO-Object 0.2, else 0); the map correction
# (decode rule 'region_mode'); 80 OpenAI templates plus OV-Stitcher's class-biased templates.
#
# Regions: CorrCLIP's pre-generated SAM 2 region maps (OV-Stitcher's mask_generator=None default
# reads the same files), data/region_masks/<voc|context|coco|city|ade>; see _base_/corrclip.py.
# DINO: the official DINO ViT-B/8 checkpoint, local path:
#   --cfg-options features.stitched_dino.weights=/path/to/dino_vitbase8_pretrain.pth
# Class-biased templates: the official repository's prompts/class_biased_template.json (not shipped
# here), read from that path relative to the working directory, or
#   --cfg-options text_encoder.extra_prompts=/path/to/class_biased_template.json
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='ovstitcher', dino='stitched_dino', regions='regions', tau=4.0, alpha=1.0, beta=0.5, merge_eps=0.2)
features = dict(
    stitched_dino=dict(
        type='stitched_vit',
        model_name='vit_base_patch8_224.dino',
        weights='checkpoints/dino_vitbase8_pretrain.pth',
        pos_interp='dino',
    ),
    regions=dict(type='regions', directory='data/region_masks/voc'),
)
preprocess = dict(short_side=448)
windows = dict(
    crop=336,
    stride=112,
    pad_to=56,
)
text_encoder = dict(templates='openai80', extra_prompts='prompts/class_biased_template.json')
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
    rules=[dict(type='region_mode', regions='regions')],
)
