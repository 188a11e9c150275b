# Vanilla CLIP baseline, ADE20K: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_ade20k.py.
_base_ = ['../_base_/vanilla.py']

classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
