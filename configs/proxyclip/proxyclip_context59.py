# ProxyCLIP (DINO ViT-B/8 proxy), ViT-B/16, PC59: 39.1 ? mIoU.
# Source: mc-lan/ProxyCLIP configs/cfg_context59.py + configs/base_config.py + proxyclip_segmentor.py.
# Paper: ProxyCLIP: "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary Segmentation" (Lan et al., ECCV 2024).
#   Official code: https://github.com/mc-lan/ProxyCLIP.
# Numbers: README = the official repository's README; [p] = the paper's, as quoted in third-party
# tables; ? = recalled, unverified (see configs/README.md). The official README reports none.
# VFM weights: a local DINO ViT-B/8 checkpoint (see _base_/proxyclip.py); another path with
#   --cfg-options features.vfm.weights=/path/to/dino_vitbase8_pretrain.pth
_base_ = ['../_base_/proxyclip.py']

# ProxyCLIP's list equals SCLIP's: SCLIP's file is reused.
classes = dict(names='../names/cls_context59.txt', background=None)
dataset_type = 'context59'
