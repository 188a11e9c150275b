# CLIP-DINOiser, ViT-B/16 (OpenCLIP laion2b_s34b_b88k), ADE20K: 20.0 ? (also on the wizwand aggregator) mIoU.
# Source: wysoczanska/clip_dinoiser configs/clip_dinoiser.yaml + segmentation/configs/_base_/datasets/ade20k.py
#   + main_eval.py.
# Paper: CLIP-DINOiser: "CLIP-DINOiser: Teaching CLIP a few DINO tricks for open-vocabulary semantic
#   segmentation" (Wysoczańska et al., ECCV 2024). Official code: https://github.com/wysoczanska/clip_dinoiser.
# Numbers: ? = recalled from the paper's table, unverified (the official README gives none; see
#   configs/README.md); the City and ADE values also appear in third-party tables.
# Trained convolutions: a local checkpoints/clip_dinoiser_last.pt (see _base_/dinoiser.py).
_base_ = ['../_base_/dinoiser.py']

# mmseg 0.x ADE20KDataset.CLASSES (the official list) is not in the official repository; SCLIP's
# 150 plain names are used (unverified against it).
classes = dict(names='../names/cls_ade20k.txt', background=None)
dataset_type = 'ade20k'
