# ClearCLIP, ViT-B/16, PC60: 32.6 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_context60.py + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

decode = dict(background_threshold=0.15)
# ClearCLIP's list equals SCLIP's here (no synonyms; literal 'background'): SCLIP's file is reused.
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
