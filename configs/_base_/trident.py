# Trident base protocol.
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
# Official code: https://github.com/YuHengsss/Trident (protocol read at commit a93b346).
# Protocol (trident.py defaults + configs/base_config.py + configs/cfg_*.py): OpenAI ViT-B/16 whose
# last block mixes its values with DINO ViT-B/16 affinities (ProxyCLIP's beta 1.2, gamma 3.0, the
# mean affinity over all windows of the image), the windows spliced on the image's patch grid and
# aggregated by SAM ViT-B's last global attention thresholded by its value cosines (cos_fac 1.2,
# threshold capped at 0.9); the image resized to short side 448 (mmseg Resize), then to multiples
# of 16 with each side at least 336 (the official preprocess_image: multiple_of / min_fit);
# sliding window 336 / stride 224 (VOC20: 112); SAM sees the original image resized (cv2) to
# multiples of 16; logits resized straight to the input; softmax(40 * cos) over all queries, max
# over synonyms (only the background has synonyms in these lists), prob_thd as the background
# threshold (VOC21 0.2, PC60 0.15, COCO-Object 0.25, else 0); 80 OpenAI templates; no PAMR.
# Then the official --sam_refine post-processing (the README's evaluation command, so the published
# numbers include it): decoder rule trident_sam_refine (coarse_thresh 0.10, minimal_area 225,
# sam_mask_coff 0.005, sam_iou_thresh 0.9; SAM set on the image cv2-resized to multiples of 16).
#
# Weights, read from local paths (nothing is downloaded; paths relative to the working directory):
# the official DINO ViT-B/16 checkpoint (dino_vitbase16_pretrain.pth, the file torch.hub
# 'dino_vitb16' downloads) and SAM ViT-B (sam_vit_b_01ec64.pth). Others with
#   --cfg-options features.dino.weights=/path/to/dino_vitbase16_pretrain.pth
#   --cfg-options features.sam.checkpoint=/path/to/sam_vit_b_01ec64.pth
# pos_interp='dino': DINO's own position interpolation, as the torch.hub model.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='trident', beta=1.2, gamma=3.0, cos_fac=1.2, refine_neg_cos=True)
features = dict(
    dino=dict(
        type='timm_vit',
        model_name='vit_base_patch16_224.dino',
        weights='checkpoints/dino_vitbase16_pretrain.pth',
        pos_interp='dino',
    ),
    sam=dict(type='sam', model_type='vit_b', checkpoint='checkpoints/sam_vit_b_01ec64.pth'),
)
preprocess = dict(short_side=448, multiple_of=16, min_fit=336)
windows = dict(
    crop=336,
    stride=224,
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
    rules=[
        dict(type='trident_sam_refine', sam='sam', coarse_thresh=0.10, minimal_area=225, sam_mask_coff=0.005,
             sam_iou_thresh=0.9),
    ],
)
