# MaskCLIP, ViT-B/16, PC60: 23.2 [p] mIoU, MaskCLIP re-run in the SCLIP paper (methods.md §0).
# MaskCLIP's repo reports no PC60 number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_context60.py).
_base_ = ['../_base_/maskclip.py']

model = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
protocol = dict(
    short_side=336,
    slide_crop=224,
    slide_stride=112,
    logit_scale=50.0,
    background_threshold=0.1,
    templates='openai80',
)
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
