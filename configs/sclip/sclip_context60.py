# SCLIP, ViT-B/16, PC60: 30.4 [p] (README 31.74) mIoU (methods.md §0).
# Source: wangf3014/SCLIP configs/cfg_context60.py (+ clip_segmentor.py defaults).
_base_ = ['../_base_/sclip.py']

decode = dict(logit_scale=50.0, background_threshold=0.1)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
