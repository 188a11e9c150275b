# MaskCLIP, ViT-B/16, VOC20: 49.5 (VOC-aug w/o bg) mIoU in MaskCLIP's repo (configs/maskclip/README.md),
# own protocol (base); under the SCLIP protocol the SCLIP paper reports 74.9 [p].
# Paper: MaskCLIP: "Extract Free Dense Labels from CLIP" (Zhou, Loy and Dai, ECCV 2022).
#   Official code: https://github.com/chongzhou96/MaskCLIP.
# [p] number and protocol: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/maskclip.py']

classes = dict(names='../names/cls_voc20.txt', background=None)
dataset_type = 'voc20'
