# ClearCLIP, ViT-B/16, ADE20K: 16.7 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_ade20k.py (not available when this config was written: base defaults assumed) + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

# ClearCLIP's list equals SCLIP's here (no synonyms): SCLIP's file is reused.
classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
