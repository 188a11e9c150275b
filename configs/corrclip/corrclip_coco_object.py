# CorrCLIP (DINO ViT-B/8 + SAM 2 regions), OpenAI ViT-B/16, COCO-Object: 40.7 [p] mIoU.
# Source: zdk258/CorrCLIP CorrCLIPv1/configs/cfg_coco_object.py + configs/base_config.py + corrclip_segmentor.py.
# Paper: CorrCLIP: "CorrCLIP: Reconstructing Patch Correlations in CLIP for Open-Vocabulary Semantic
#   Segmentation" (Zhang et al., ICCV 2025). Official code: https://github.com/zdk258/CorrCLIP.
# Numbers: README = the official repository's README (SAM2-32 masks); [p] = CorrCLIP with OpenAI
#   ViT-B/16 as reported in OV-Stitcher's Table 1 (see configs/README.md).
# Regions: CorrCLIP's pre-generated maps in data/region_masks/coco (see _base_/corrclip.py).
_base_ = ['../_base_/corrclip.py']

features = dict(regions=dict(directory='data/region_masks/coco'))
decode = dict(background_threshold=0.25)
# CorrCLIP's own configs/cls_coco_object.txt (synonyms only on the background line).
classes = dict(names='../names/cls_coco_object_corrclip.txt', background='first')
dataset_type = 'coco_object'
