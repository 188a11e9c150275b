# Vanilla CLIP baseline, PC60: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_context60.py.
_base_ = ['../_base_/vanilla.py']

decode = dict(logit_scale=50.0, background_threshold=0.1)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
