# MaskCLIP, ViT-B/16, COCO-Stuff164k: 12.5 mIoU in MaskCLIP's repo (configs/maskclip/README.md),
# own protocol (base); under the SCLIP protocol the SCLIP paper reports 16.7 [p] (methods.md §0).
_base_ = ['../_base_/maskclip.py']

classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
