# MaskCLIP, ViT-B/16, PC60: 23.2 [p] mIoU, MaskCLIP re-run in the SCLIP paper.
# MaskCLIP's repo reports no PC60 number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_context60.py).
# Paper: MaskCLIP: "Extract Free Dense Labels from CLIP" (Zhou, Loy and Dai, ECCV 2022).
#   Official code: https://github.com/chongzhou96/MaskCLIP.
# [p] number and protocol: SCLIP: "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference" (Wang, Mei and Yuille, ECCV 2024).
#   Official code: https://github.com/wangf3014/SCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md).
_base_ = ['../_base_/maskclip.py']

backbone = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
preprocess = dict(short_side=336)
windows = dict(
    crop=224,
    stride=112,
)
text_encoder = dict(templates='openai80')
decode = dict(
    logit_scale=50.0,
    background_threshold=0.1,
)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
