# SCLIP, ViT-B/16, ADE20K: 16.1 [p] (README 16.45) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_ade20k.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
