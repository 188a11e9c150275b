# CLIP-DINOiser, ViT-B/16 (OpenCLIP laion2b_s34b_b88k), PC60: 32.4 ? mIoU.
# Source: wysoczanska/clip_dinoiser configs/clip_dinoiser.yaml + segmentation/configs/_base_/datasets/pascal_context.py
#   + main_eval.py.
# Paper: CLIP-DINOiser: "CLIP-DINOiser: Teaching CLIP a few DINO tricks for open-vocabulary semantic
#   segmentation" (Wysoczańska et al., ECCV 2024). Official code: https://github.com/wysoczanska/clip_dinoiser.
# Numbers: ? = recalled from the paper's table, unverified (the official README gives none; see
#   configs/README.md); the City and ADE values also appear in third-party tables.
# Trained convolutions: a local checkpoints/clip_dinoiser_last.pt (see _base_/dinoiser.py).
_base_ = ['../_base_/dinoiser.py']

# no FOUND here (main_eval.py): the literal 'background' class competes like any other.
# The official dataset's CLASSES (segmentation/datasets/), one plain name per line.
classes = dict(names='../names/cls_context60_dinoiser.txt', background='first')
dataset_type = 'context60'
