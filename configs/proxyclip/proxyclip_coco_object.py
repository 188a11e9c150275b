# ProxyCLIP (DINO ViT-B/8 proxy), ViT-B/16, COCO-Object: 37.5 [p] mIoU.
# Source: mc-lan/ProxyCLIP configs/cfg_coco_object.py + configs/base_config.py + proxyclip_segmentor.py.
# Paper: ProxyCLIP: "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary Segmentation" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ProxyCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md). The official README reports none.
# VFM weights: a local DINO ViT-B/8 checkpoint (see _base_/proxyclip.py); another path with
#   --cfg-options features.vfm.weights=/path/to/dino_vitbase8_pretrain.pth
_base_ = ['../_base_/proxyclip.py']

decode = dict(background_threshold=0.25)
# ProxyCLIP's own configs/cls_coco_object.txt: a 17-word background line and a plain 'person'.
classes = dict(names='../names/cls_coco_object_proxyclip.txt', background='first')
dataset_type = 'coco_object'
