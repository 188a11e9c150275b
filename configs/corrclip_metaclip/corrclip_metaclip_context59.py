# CorrCLIP (DINO ViT-B/8 + SAM 2 regions), MetaCLIP ViT-B/16, PASCAL Context 59: 48.8 README mIoU.
# Source: zdk258/CorrCLIP CorrCLIPv1/configs/cfg_context59.py + configs/base_config.py + corrclip_segmentor.py.
# Paper: CorrCLIP: "CorrCLIP: Reconstructing Patch Correlations in CLIP for Open-Vocabulary Semantic
#   Segmentation" (Zhang et al., ICCV 2025). Official code: https://github.com/zdk258/CorrCLIP.
# Numbers: README = the official repository's README (SAM2-32 masks); [p] = CorrCLIP with OpenAI
#   ViT-B/16 as reported in OV-Stitcher's Table 1 (see configs/README.md).
# Regions: CorrCLIP's pre-generated maps in data/region_masks/context (see _base_/corrclip.py).
_base_ = ['../_base_/corrclip.py']

# The official repository's default CLIP: clip_type='metaclip_fullcc', model_type='ViT-B-16-quickgelu'.
backbone = dict(clip_model='ViT-B-16-quickgelu', pretrained='metaclip_fullcc')
features = dict(regions=dict(directory='data/region_masks/context'))
# CorrCLIP's own configs/cls_context59.txt (synonyms only on the background line).
classes = dict(names='../names/cls_context59_corrclip.txt', background=None)
dataset_type = 'context59'
