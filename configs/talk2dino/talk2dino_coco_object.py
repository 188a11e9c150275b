# Talk2DINO (DINOv2 ViT-B/14-reg + CLIP ViT-B/16 text, vitb_mlp_infonce), COCO-Object: 45.1 [p] mIoU.
# Source: lorebianchi98/Talk2DINO src/open_vocabulary_segmentation/configs/coco_object/dinotext_coco_object_vitb_mlp_infonce.yml
#   + eval_coco_object_pamr.yml + segmentation/configs/_base_/datasets/coco.py.
# Paper: Talk2DINO: "Talking to DINO: Bridging Self-Supervised Vision Backbones with Language for
#   Open-Vocabulary Segmentation" (Barsellotti et al., ICCV 2025). Official code: https://github.com/lorebianchi98/Talk2DINO.
# Numbers: [p] = the paper's number as quoted in ConceptBank's Table 1 (2026); its 8-dataset mean is 46.3.
#   The official README gives no table.
# Weights: local checkpoints/talk2dino_vitb_mlp_infonce.pth and checkpoints/dinov2_vitb14_reg4_pretrain.pth
#   (see _base_/talk2dino.py).
_base_ = ['../_base_/talk2dino.py']

head = dict(bg_clean=True)  # the official with_bg_clean: true
# bg_thresh 0.55 (eval_coco_object_pamr.yml): a constant background score in front of the class scores
decode = dict(rules=[dict(type='constant_background', score=0.55)])
# Class names: the official segmentation/datasets/coco_object.py CLASSES, one plain name per line.
classes = dict(names='../names/cls_coco_object_talk2dino.txt', background='first')
dataset_type = 'coco_object'
