# CorrCLIP base protocol, OpenAI ViT-B/16 (the CLIP of the other methods' tables; the leaves in
# configs/corrclip_metaclip/ swap in the official repository's default MetaCLIP ViT-B/16).
# Paper: CorrCLIP: "CorrCLIP: Reconstructing Patch Correlations in CLIP for Open-Vocabulary Semantic
#   Segmentation" (Zhang et al., ICCV 2025).
# Official code: https://github.com/zdk258/CorrCLIP (CorrCLIPv1, protocol read at commit 103bc18).
# Protocol (corrclip_segmentor.py + configs/base_config.py + configs/cfg_*.py, CorrCLIPv1): CLIP's
# last block mixes values with DINO ViT-B/8's last-block q+k correlations limited to class-agnostic
# regions (merged by DBSCAN on their mean DINO features), plus a spatial branch (mean of 5 lower
# blocks) and a semantic branch (one class token per region); short side 336 (ADE20K, Cityscapes
# 448); sliding window 336 / stride 112 (Cityscapes 224 / 112), windows zero-padded (centred) to a
# multiple of 56; softmax(40 * cos) over all queries, max over the background's names, prob_thd as
# background threshold (VOC21 0.2, PC60 0.15, COCO-Object 0.25, else 0); then the map correction
# (every region takes its most frequent label: decode rule 'region_mode'); 80 OpenAI templates.
#
# Regions: the pre-generated SAM 2 region maps CorrCLIP publishes (region_masks.zip on its Hugging
# Face dataset page; one <image stem>.npz per image holding 'instance_mask'), read from
# data/region_masks/<voc|context|coco|city|ade> relative to the working directory (the official
# instance_mask_path), or another folder with
#   --cfg-options features.regions.directory=/path/to/region_masks/voc
# To make them on the fly from SAM instead (CorrCLIP's mask_generator='sam2' uses SAM 2 with 8
# points per side, pred_iou_thresh 0.4, stability_score_thresh 0.4, one mask per point):
#   features = dict(sam=dict(type='sam2', ...), regions=dict(type='regions',
#       proposals=dict(type='sam2_automatic', provider='sam', points_per_side=8, pred_iou_thresh=0.4,
#                      stability_score_thresh=0.4, multimask_output=False)))
# DINO: the official DINO ViT-B/8 checkpoint (dino_vitbase8_pretrain.pth, the file torch.hub
# 'dino_vitb8' downloads), read from a local path; nothing is downloaded:
#   --cfg-options features.dino.weights=/path/to/dino_vitbase8_pretrain.pth
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='corrclip', dino='dino', regions='regions', tau=4.0, alpha=1.0, beta=0.5, merge_eps=0.2)
features = dict(
    dino=dict(
        type='timm_vit',
        model_name='vit_base_patch8_224.dino',
        weights='checkpoints/dino_vitbase8_pretrain.pth',
        pos_interp='dino',
        output='q+k',
    ),
    regions=dict(type='regions', directory='data/region_masks/voc'),
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
    rules=[dict(type='region_mode', regions='regions')],
)
