# MaskCLIP, ViT-B/16, VOC21: 43.4 [p] mIoU, MaskCLIP re-run in the SCLIP paper (methods.md §0).
# MaskCLIP's repo reports no VOC21 number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_voc21.py).
_base_ = ['../_base_/maskclip.py']

model = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
protocol = dict(
    short_side=336,
    slide_crop=224,
    slide_stride=112,
    logit_scale=65.0,
    background_threshold=0.1,
    area_threshold=0.1,
    templates='openai80',
)
classes = dict(names='../names/cls_voc21.txt', background='first')
dataset_type = 'voc21'
