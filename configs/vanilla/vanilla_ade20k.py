# Vanilla CLIP baseline, ADE20K: no published number (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_ade20k.py.
# Protocol paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
_base_ = ['../_base_/vanilla.py']

classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
