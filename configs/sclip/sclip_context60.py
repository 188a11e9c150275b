# SCLIP, ViT-B/16, PC60: 30.4 [p] (README 31.74) mIoU.
# Source: wangf3014/SCLIP configs/cfg_context60.py (+ clip_segmentor.py defaults).
# Paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/sclip.py']

decode = dict(logit_scale=50.0, background_threshold=0.1)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
