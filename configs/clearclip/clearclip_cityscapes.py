# ClearCLIP, ViT-B/16, Cityscapes: 30.0 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_city_scapes.py + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

windows = dict(crop=224, stride=224)
# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
