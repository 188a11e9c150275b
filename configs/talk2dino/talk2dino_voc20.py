# Talk2DINO (DINOv2 ViT-B/14-reg + CLIP ViT-B/16 text, vitb_mlp_infonce), VOC20: 88.5 [p] mIoU.
# Source: lorebianchi98/Talk2DINO src/open_vocabulary_segmentation/configs/voc/dinotext_voc_vitb_mlp_infonce.yml
#   + eval_voc_pamr.yml + segmentation/configs/_base_/datasets/pascal_voc12_20.py.
# Paper: Talk2DINO: "Talking to DINO: Bridging Self-Supervised Vision Backbones with Language for
#   Open-Vocabulary Segmentation" (Barsellotti et al., ICCV 2025). Official code: https://github.com/lorebianchi98/Talk2DINO.
# Numbers: [p] = the paper's number as quoted in ConceptBank's Table 1 (2026); its 8-dataset mean is 46.3.
#   The official README gives no table.
# Weights: local checkpoints/talk2dino_vitb_mlp_infonce.pth and checkpoints/dinov2_vitb14_reg4_pretrain.pth
#   (see _base_/talk2dino.py).
_base_ = ['../_base_/talk2dino.py']

# Class names: the official segmentation/datasets/pascal_voc.py PascalVOCDataset20.CLASSES, one plain name per line.
classes = dict(names='../names/cls_voc20_talk2dino.txt', background=None)
dataset_type = 'voc20'
