# SCLIP, ViT-B/16, PC59: 34.2 [p] (README 34.46) mIoU.
# Source: wangf3014/SCLIP configs/cfg_context59.py (+ clip_segmentor.py defaults).
# Paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/sclip.py']

classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
