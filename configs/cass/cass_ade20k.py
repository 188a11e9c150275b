# CASS (DINO ViT-B/8 key graphs), ViT-B/16, ADE20K: 20.4 ? mIoU.
# Source: MICV-yonsei/CASS configs/cfg_ade20k.py + configs/base_config.py + cass_segmentor.py + eval_all.sh.
# Paper: CASS: "Distilling Spectral Graph for Object-Context Aware Open-Vocabulary Semantic Segmentation" (Kim et al., CVPR 2025).
#   Official code: https://github.com/MICV-yonsei/CASS.
# Numbers: ? = recalled from the paper's table, unverified (their 8-dataset mean, 44.4, is the
#   paper's reported average); the official README reports none (see configs/README.md).
# DINO weights: a local DINO ViT-B/8 checkpoint (see _base_/cass.py); another path with
#   --cfg-options features.dino.weights=/path/to/dino_vitbase8_pretrain.pth
_base_ = ['../_base_/cass.py']

head = dict(global_weight=0.3, mean_vector_weight=0.05, h_threshold=0.06)
# CASS's configs/cls_ade20k.txt equals SCLIP's list: SCLIP's file is reused.
classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
