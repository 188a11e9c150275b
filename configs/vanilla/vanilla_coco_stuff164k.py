# Vanilla CLIP baseline, COCO-Stuff164k: no published number in methods.md §0 (baseline only).
# Protocol: SCLIP's, wangf3014/SCLIP configs/cfg_coco_stuff164k.py.
_base_ = ['../_base_/vanilla.py']

preprocess = dict(short_side=448)
classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
