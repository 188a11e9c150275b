# CLIP-DINOiser, ViT-B/16 (OpenCLIP laion2b_s34b_b88k), VOC20: 80.9 ? mIoU.
# Source: wysoczanska/clip_dinoiser configs/clip_dinoiser.yaml + segmentation/configs/_base_/datasets/pascal_voc12_20.py
#   + main_eval.py.
# Paper: CLIP-DINOiser: "CLIP-DINOiser: Teaching CLIP a few DINO tricks for open-vocabulary semantic
#   segmentation" (Wysoczańska et al., ECCV 2024). Official code: https://github.com/wysoczanska/clip_dinoiser.
# Numbers: ? = recalled from the paper's table, unverified (the official README gives none; see
#   configs/README.md); the City and ADE values also appear in third-party tables.
# Trained convolutions: a local checkpoints/clip_dinoiser_last.pt (see _base_/dinoiser.py).
_base_ = ['../_base_/dinoiser.py']

# The official dataset's CLASSES (segmentation/datasets/), one plain name per line.
classes = dict(names='../names/cls_voc20_dinoiser.txt', background=None)
dataset_type = 'voc20'
