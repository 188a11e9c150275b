# NACLIP, ViT-B/16, VOC21: 64.07 (README, with PAMR; 58.9 [p] without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_voc21.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

windows = dict(crop=0)
decode = dict(background_threshold=0.1)
classes = dict(names='../names/cls_voc21.txt', background='first')
dataset_type = 'voc21'
