# Trident (DINO ViT-B/16 + SAM ViT-B), ViT-B/16, ADE20K: 21.9 README mIoU (with --sam_refine).
# Source: YuHengsss/Trident configs/cfg_ade20k.py + configs/base_config.py + trident.py (--sam_refine on: decoder rule trident_sam_refine).
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
#   Official code: https://github.com/YuHengsss/Trident.
# Weights: local DINO ViT-B/16 and SAM ViT-B checkpoints (see _base_/trident.py); other paths with
#   --cfg-options features.dino.weights=... features.sam.checkpoint=...
_base_ = ['../_base_/trident.py']

preprocess = dict(short_side=576)
head = dict(refine_neg_cos=False)
# Trident's configs/cls_ade20k.txt equals SCLIP's: SCLIP's file is reused.
classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
