# ClearCLIP, ViT-B/16, VOC21: 51.8 [p] mIoU, paper (methods.md §0).
# Source: mc-lan/ClearCLIP configs/cfg_voc21.py + clearclip_segmentor.py.
_base_ = ['../_base_/clearclip.py']

decode = dict(background_threshold=0.5)
# ClearCLIP's own configs/cls_voc21.txt ('background' + plain VOC names).
classes = dict(names='../names/cls_voc21_plain.txt', background='first')
dataset_type = 'voc21'
