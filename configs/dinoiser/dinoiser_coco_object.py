# CLIP-DINOiser, ViT-B/16 (OpenCLIP laion2b_s34b_b88k), COCO-Object: 34.8 ? mIoU.
# Source: wysoczanska/clip_dinoiser configs/clip_dinoiser.yaml + segmentation/configs/_base_/datasets/coco.py
#   + main_eval.py.
# Paper: CLIP-DINOiser: "CLIP-DINOiser: Teaching CLIP a few DINO tricks for open-vocabulary semantic
#   segmentation" (Wysoczańska et al., ECCV 2024). Official code: https://github.com/wysoczanska/clip_dinoiser.
# Numbers: ? = recalled from the paper's table, unverified (the official README gives none; see
#   configs/README.md); the City and ADE values also appear in third-party tables.
# Trained convolutions: a local checkpoints/clip_dinoiser_last.pt (see _base_/dinoiser.py).
_base_ = ['../_base_/dinoiser.py']

# main_eval.py sets apply_found for 'voc' and 'coco_object' only: FOUND's background on uncertain pixels.
decode = dict(rules=[dict(type='found_background', delta=0.99, threshold=0.5)])
# The official dataset's CLASSES (segmentation/datasets/), one plain name per line.
classes = dict(names='../names/cls_coco_object_dinoiser.txt', background='first')
dataset_type = 'coco_object'
