# SCLIP, ViT-B/16, Cityscapes: 32.2 [p] (README 32.34) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_city_scapes.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

preprocess = dict(short_side=560)
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
