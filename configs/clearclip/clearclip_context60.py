# ClearCLIP, ViT-B/16, PC60: 32.6 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_context60.py + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

decode = dict(background_threshold=0.15)
# ClearCLIP's list equals SCLIP's here (no synonyms; literal 'background'): SCLIP's file is reused.
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
