# NACLIP, ViT-B/16, Cityscapes: 38.27 (README, with PAMR; 35.5 [p] without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_city_scapes.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

preprocess = dict(short_side=560)
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
