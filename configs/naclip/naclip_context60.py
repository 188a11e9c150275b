# NACLIP, ViT-B/16, PC60: 34.99 (README, with PAMR; 32.2 [p] without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_context60.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

decode = dict(background_threshold=0.1)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
