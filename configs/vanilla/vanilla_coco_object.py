# Vanilla CLIP baseline, COCO-Object: no published number (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_coco_object.py.
# Protocol paper: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
_base_ = ['../_base_/vanilla.py']

decode = dict(logit_scale=50.0, background_threshold=0.1)
classes = dict(names='../names/cls_coco_object.txt', background='first')
dataset_type = 'coco_object'
