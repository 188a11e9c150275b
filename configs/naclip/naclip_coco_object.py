# NACLIP, ViT-B/16, COCO-Object: 36.19 (README, with PAMR; 33.2 [p] without) mIoU.
# Source: sinahmr/NACLIP configs/cfg_coco_object.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
# Paper: NACLIP: "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary Semantic Segmentation" (Hajimiri, Ben Ayed and Dolz, WACV 2025).
#   Official code: https://github.com/sinahmr/NACLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/naclip.py']

decode = dict(background_threshold=0.1)
classes = dict(names='../names/cls_coco_object.txt', background='first')
dataset_type = 'coco_object'
