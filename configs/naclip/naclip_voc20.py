# NACLIP, ViT-B/16, VOC20: 83.03 (README, with PAMR; 79.7? without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_voc20.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

windows = dict(crop=0)
classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
