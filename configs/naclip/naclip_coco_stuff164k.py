# NACLIP, ViT-B/16, COCO-Stuff164k: 25.69 (README, with PAMR; 23.3? without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_coco_stuff164k.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
