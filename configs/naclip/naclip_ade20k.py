# NACLIP, ViT-B/16, ADE20K: 19.05 (README, with PAMR; 17.4 [p] without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_ade20k.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
