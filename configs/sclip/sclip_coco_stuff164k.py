# SCLIP, ViT-B/16, COCO-Stuff164k: 22.4 [p] (README 22.77) mIoU.
# Source: wangf3014/SCLIP configs/cfg_coco_stuff164k.py (+ clip_segmentor.py defaults).
# Paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/sclip.py']

preprocess = dict(short_side=448)
classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
