# MaskCLIP, ViT-B/16, Cityscapes: 24.9 [p] mIoU, MaskCLIP re-run in the SCLIP paper.
# MaskCLIP's repo reports no Cityscapes number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_city_scapes.py).
# Paper: MaskCLIP: "Extract Free Dense Labels from CLIP" (Zhou, Loy and Dai, ECCV 2022).
#   Official code: https://github.com/chongzhou96/MaskCLIP.
# [p] number and protocol: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/maskclip.py']

# (MaskCLIP's repo has a Cityscapes dataset config, whole image at img_scale=(1024, 512), but no number.)
backbone = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
preprocess = dict(short_side=560)
windows = dict(crop=224, stride=112)
text_encoder = dict(templates='openai80')
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
