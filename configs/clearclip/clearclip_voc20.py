# ClearCLIP, ViT-B/16, VOC20: 80.9 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_voc20.py + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's configs/cls_voc21.txt without its 'background' line (no synonyms).
classes = dict(names='../names/cls_voc20_plain.txt', background=None)
dataset_type = 'voc20'
