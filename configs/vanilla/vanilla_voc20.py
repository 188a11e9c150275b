# Vanilla CLIP baseline, VOC20: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_voc20.py.
_base_ = ['../_base_/vanilla.py']

classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
