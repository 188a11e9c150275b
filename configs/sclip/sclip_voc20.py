# SCLIP, ViT-B/16, VOC20: 80.4 [p] (README 81.54) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_voc20.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
