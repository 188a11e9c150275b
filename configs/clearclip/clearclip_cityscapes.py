# ClearCLIP, ViT-B/16, Cityscapes: 30.0 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_city_scapes.py + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

windows = dict(crop=224, stride=224)
# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
