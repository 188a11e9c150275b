# SCLIP, ViT-B/16, PC59: 34.2 [p] (README 34.46) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_context59.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
