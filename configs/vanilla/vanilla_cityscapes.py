# Vanilla CLIP baseline, Cityscapes: no published number (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_city_scapes.py.
# Protocol paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
_base_ = ['../_base_/vanilla.py']

preprocess = dict(short_side=560)
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
