# SCLIP, ViT-B/16, COCO-Object: 30.5 [p] (README 33.52) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_coco_object.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

decode = dict(logit_scale=50.0, background_threshold=0.1)
classes = dict(names='../names/cls_coco_object.txt', background='first')
dataset_type = 'coco_object'
