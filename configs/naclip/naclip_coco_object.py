# NACLIP, ViT-B/16, COCO-Object: 36.19 (README, with PAMR; 33.2 [p] without) mIoU (methods.md §0).
# Source: sinahmr/NACLIP configs/cfg_coco_object.py (+ naclip.py defaults); pamr_steps=0 gives the no-PAMR row.
_base_ = ['../_base_/naclip.py']

decode = dict(background_threshold=0.1)
classes = dict(names='../names/cls_coco_object.txt', background='first')
dataset_type = 'coco_object'
