# ClearCLIP, ViT-B/16, COCO-Object: 33.0 [p] mIoU, paper.
# Source: mc-lan/ClearCLIP configs/cfg_coco_object.py + clearclip_segmentor.py.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ClearCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/clearclip.py']

decode = dict(background_threshold=0.4)
# 'background' + the 80 COCO names (first synonym of SCLIP's lines), no synonyms.
classes = dict(names='../names/cls_coco_object_plain.txt', background='first')
dataset_type = 'coco_object'
