# ClearCLIP, ViT-B/16, PC59: 35.9 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_context59.py + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
