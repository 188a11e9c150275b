# ClearCLIP, ViT-B/16, COCO-Stuff164k: 23.9 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_coco_stuff164k.py (not in the stored repo: base defaults assumed) + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_coco_stuff.txt', background=None)
dataset_type = 'coco_stuff164k'
