# Talk2DINO (DINOv2 ViT-B/14-reg + CLIP ViT-B/16 text, vitb_mlp_infonce), COCO-Stuff: 30.2 [p] mIoU.
# Source: lorebianchi98/Talk2DINO src/open_vocabulary_segmentation/configs/stuff/dinotext_stuff_vitb_mlp_infonce.yml
#   + eval_stuff_pamr.yml + segmentation/configs/_base_/datasets/stuff.py.
# Paper: Talk2DINO: "Talking to DINO: Bridging Self-Supervised Vision Backbones with Language for
#   Open-Vocabulary Segmentation" (Barsellotti et al., ICCV 2025). Official code: https://github.com/lorebianchi98/Talk2DINO.
# Numbers: [p] = the paper's number as quoted in ConceptBank's Table 1 (2026); its 8-dataset mean is 46.3.
#   The official README gives no table.
# Weights: local checkpoints/talk2dino_vitb_mlp_infonce.pth and checkpoints/dinov2_vitb14_reg4_pretrain.pth
#   (see _base_/talk2dino.py).
_base_ = ['../_base_/talk2dino.py']

# Class names: mmseg 0.30 COCOStuffDataset.CLASSES, one plain name per line.
classes = dict(names='../names/cls_coco_stuff_talk2dino.txt', background=None)
dataset_type = 'coco_stuff164k'
