# Trident (DINO ViT-B/16 + SAM ViT-B), ViT-B/16, VOC21: 67.1 README mIoU (with --sam_refine).
# Source: YuHengsss/Trident configs/cfg_voc21.py + configs/base_config.py + trident.py (--sam_refine on: decoder rule trident_sam_refine).
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
#   Official code: https://github.com/YuHengsss/Trident.
# Weights: local DINO ViT-B/16 and SAM ViT-B checkpoints (see _base_/trident.py); other paths with
#   --cfg-options features.dino.weights=... features.sam.checkpoint=...
_base_ = ['../_base_/trident.py']

decode = dict(background_threshold=0.2)
# Trident's configs/cls_voc21.txt equals ProxyCLIP's (26-word background, plain 'person', 'tvmonitor').
classes = dict(names='../names/cls_voc21_proxyclip.txt', background='first')
dataset_type = 'voc21'
