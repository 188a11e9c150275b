# Vanilla CLIP baseline, COCO-Stuff164k: no published number (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_coco_stuff164k.py.
# Protocol paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
_base_ = ['../_base_/vanilla.py']

preprocess = dict(short_side=448)
classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
