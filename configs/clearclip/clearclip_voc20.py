# ClearCLIP, ViT-B/16, VOC20: 80.9 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_voc20.py + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's configs/cls_voc21.txt without its 'background' line (no synonyms).
classes = dict(names='../names/cls_voc20_plain.txt', background=None)
dataset_type = 'voc20'
