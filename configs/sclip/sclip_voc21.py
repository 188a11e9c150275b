# SCLIP, ViT-B/16, VOC21: 59.1 [p] (README 59.63) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_voc21.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

decode = dict(logit_scale=65.0, background_threshold=0.1, area_threshold=0.1)
classes = dict(names='../names/cls_voc21.txt', background='first')
dataset_type = 'voc21'
