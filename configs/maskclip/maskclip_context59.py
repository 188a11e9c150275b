# MaskCLIP, ViT-B/16, PC59: 21.7 mIoU in MaskCLIP's repo (configs/maskclip/README.md),
# own protocol (base); under the SCLIP protocol the SCLIP paper reports 26.4 [p] (methods.md §0).
_base_ = ['../_base_/maskclip.py']

preprocess = dict(short_side=None, image_scale=(520, 520))  # repo: img_scale=(520, 520), long side 520
classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
