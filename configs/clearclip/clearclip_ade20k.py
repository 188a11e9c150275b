# ClearCLIP, ViT-B/16, ADE20K: 16.7 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_ade20k.py (not in the stored repo: base defaults assumed) + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
