# CASS (DINO ViT-B/8 key graphs), ViT-B/16, PC60: 36.7 ? mIoU.
# Source: MICV-yonsei/CASS configs/cfg_context60.py + configs/base_config.py + cass_segmentor.py + eval_all.sh.
# Paper: CASS: "Distilling Spectral Graph for Object-Context Aware Open-Vocabulary Semantic Segmentation" (Kim et al., CVPR 2025).
#   Official code: https://github.com/MICV-yonsei/CASS.
# Numbers: ? = recalled from the paper's table, unverified (their 8-dataset mean, 44.4, is the
#   paper's reported average); the official README reports none (see configs/README.md).
# DINO weights: a local DINO ViT-B/8 checkpoint (see _base_/cass.py); another path with
#   --cfg-options features.dino.weights=/path/to/dino_vitbase8_pretrain.pth
_base_ = ['../_base_/cass.py']

head = dict(global_weight=0.25, mean_vector_weight=0.04, h_threshold=0.09)
decode = dict(background_threshold=0.1)
# CASS's configs/cls_context60.txt equals SCLIP's list: SCLIP's file is reused.
classes = dict(names='../names/cls_context60.txt', background='first')
dataset_type = 'context60'
