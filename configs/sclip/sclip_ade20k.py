# SCLIP, ViT-B/16, ADE20K: 16.1 [p] (README 16.45) mIoU.
# Source: wangf3014/SCLIP configs/cfg_ade20k.py (+ clip_segmentor.py defaults).
# Paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/sclip.py']

classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
