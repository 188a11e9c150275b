# NACLIP, ViT-B/16, Cityscapes: 38.27 (README, with PAMR; 35.5 [p] without) mIoU.
# Source: sinahmr/NACLIP configs/cfg_city_scapes.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
# Paper: NACLIP: "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary Semantic Segmentation" (Hajimiri, Ben Ayed and Dolz, WACV 2025).
#   Official code: https://github.com/sinahmr/NACLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/naclip.py']

preprocess = dict(short_side=560)
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
