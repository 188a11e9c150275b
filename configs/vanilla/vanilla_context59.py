# Vanilla CLIP baseline, PC59: no published number (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_context59.py.
# Protocol paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
_base_ = ['../_base_/vanilla.py']

classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
