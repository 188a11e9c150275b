# NACLIP, ViT-B/16, PC60: 34.99 (README, with PAMR; 32.2 [p] without) mIoU.
# Source: sinahmr/NACLIP configs/cfg_context60.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
# Paper: NACLIP: "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary Semantic Segmentation" (Hajimiri, Ben Ayed and Dolz, WACV 2025).
#   Official code: https://github.com/sinahmr/NACLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/naclip.py']

decode = dict(background_threshold=0.1)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
