# NACLIP, ViT-B/16, VOC20: 83.03 (README, with PAMR; 79.7? without) mIoU.
# Source: sinahmr/NACLIP configs/cfg_voc20.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
# Paper: NACLIP: "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary Semantic Segmentation" (Hajimiri, Ben Ayed and Dolz, WACV 2025).
#   Official code: https://github.com/sinahmr/NACLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/naclip.py']

windows = dict(crop=0)
classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
