# Vanilla CLIP baseline, PC59: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_context59.py.
_base_ = ['../_base_/vanilla.py']

classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
