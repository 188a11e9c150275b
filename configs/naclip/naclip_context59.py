# NACLIP, ViT-B/16, PC59: 38.35 (README, with PAMR; 35.2? without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_context59.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
