# SCLIP, ViT-B/16, COCO-Stuff164k: 22.4 [p] (README 22.77) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_coco_stuff164k.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

preprocess = dict(short_side=448)
classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
