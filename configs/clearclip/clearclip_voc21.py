# ClearCLIP, ViT-B/16, VOC21: 51.8 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_voc21.py + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

decode = dict(background_threshold=0.5)
# ClearCLIP's own configs/cls_voc21.txt ('background' + plain VOC names).
classes = dict(names='../names/cls_voc21_plain.txt', background='first')
dataset_type = 'voc21'
