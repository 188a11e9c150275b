# OV-Stitcher (DINO ViT-B/8 + SAM 2 regions), OpenAI ViT-B/16, Pascal Context 59: 48.8 [p] mIoU.
# Source: atw617/OV-Stitcher configs/cfg_context59.py + configs/base_config.py + ov_stitcher_segmentor.py (91a9489).
# Paper: "OV-Stitcher" (CVPR 2026 Findings). Official code: https://github.com/atw617/OV-Stitcher.
# Numbers: [p] = the paper's Table 1 (OpenAI ViT-B/16 row; see configs/README.md).
# Regions: CorrCLIP's pre-generated maps in data/region_masks/context (see _base_/ovstitcher.py).
# Names: CorrCLIP's files (OV-Stitcher's own configs/cls_*.txt could not be read here; its code reads them alike).
_base_ = ['../_base_/ovstitcher.py']

features = dict(regions=dict(directory='data/region_masks/context'))
classes = dict(names='../names/cls_context59_corrclip.txt', background=None)
dataset_type = 'context59'
