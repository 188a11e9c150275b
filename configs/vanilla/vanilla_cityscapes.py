# Vanilla CLIP baseline, Cityscapes: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_city_scapes.py.
_base_ = ['../_base_/vanilla.py']

preprocess = dict(short_side=560)
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
