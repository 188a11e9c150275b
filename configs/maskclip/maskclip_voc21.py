# MaskCLIP, ViT-B/16, VOC21: 43.4 [p] mIoU, MaskCLIP re-run in the SCLIP paper (methods.md §0).
# MaskCLIP's repo reports no VOC21 number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_voc21.py).
_base_ = ['../_base_/maskclip.py']

backbone = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
preprocess = dict(short_side=336)
windows = dict(
    crop=224,
    stride=112,
)
text_encoder = dict(templates='openai80')
decode = dict(
    logit_scale=65.0,
    background_threshold=0.1,
    area_threshold=0.1,
)
classes = dict(names='../names/cls_voc21.txt', background='first')
dataset_type = 'voc21'
