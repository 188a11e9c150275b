# Vanilla CLIP baseline, VOC21: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_voc21.py.
_base_ = ['../_base_/vanilla.py']

decode = dict(logit_scale=65.0, background_threshold=0.1, area_threshold=0.1)
classes = dict(names='../names/cls_voc21.txt', background='first')
dataset_type = 'voc21'
