# MaskCLIP, ViT-B/16, VOC20: 49.5 (VOC-aug w/o bg) mIoU in MaskCLIP's repo (configs/maskclip/README.md),
# own protocol (base); under the SCLIP protocol the SCLIP paper reports 74.9 [p] (methods.md §0).
_base_ = ['../_base_/maskclip.py']

classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
