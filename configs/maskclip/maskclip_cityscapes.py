# MaskCLIP, ViT-B/16, Cityscapes: 24.9 [p] mIoU, MaskCLIP re-run in the SCLIP paper (methods.md §0).
# MaskCLIP's repo reports no Cityscapes number, so this uses the SCLIP protocol (wangf3014/SCLIP configs/cfg_city_scapes.py).
_base_ = ['../_base_/maskclip.py']

# (MaskCLIP's repo has a Cityscapes dataset config, whole image at img_scale=(1024, 512), but no number.)
backbone = dict(pos_interp='scale_factor')  # SCLIP's codebase interpolates with scale_factor
preprocess = dict(short_side=560)
windows = dict(crop=224, stride=112)
text_encoder = dict(templates='openai80')
classes = dict(names='../names/cls_city_scapes.txt', background=None)
dataset_type = 'cityscapes'
