# Trident (DINO ViT-B/16 + SAM ViT-B), ViT-B/16, Cityscapes: 42.9 README mIoU (with --sam_refine).
# Source: YuHengsss/Trident configs/cfg_city_scapes.py + configs/base_config.py + trident.py (--sam_refine on: decoder rule trident_sam_refine).
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
#   Official code: https://github.com/YuHengsss/Trident.
# Weights: local DINO ViT-B/16 and SAM ViT-B checkpoints (see _base_/trident.py); other paths with
#   --cfg-options features.dino.weights=... features.sam.checkpoint=...
_base_ = ['../_base_/trident.py']

preprocess = dict(short_side=688)
# The official code embeds the left and right halves of the image in SAM separately.
head = dict(cos_fac=3.0, refine_neg_cos=False, split_halves=True)
# Trident's configs/cls_city_scapes.txt equals SCLIP's: SCLIP's file is reused.
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
