# CASS base protocol.
# Paper: CASS: "Distilling Spectral Graph for Object-Context Aware Open-Vocabulary Semantic Segmentation" (Kim et al., CVPR 2025).
# Official code: https://github.com/MICV-yonsei/CASS (protocol read at commit 228ecdd).
# Protocol (cass_segmentor.py defaults + configs/base_config.py + configs/cfg_*.py + eval_all.sh):
# OpenAI ViT-B/16 whose last block fuses a DINO ViT-B/8's last-block key graphs (spectral
# matching of heads, rank-10 graphs, Gaussian sigma 5, no residual / MLP), and per-window text
# adjustment from an image-level CLS prior (Ward groups of the queries); short side 336
# (Cityscapes 560); sliding window 224 / stride 112 (VOC21: one whole-image pass), no padding;
# softmax(40 * logits) over all queries, max over synonyms, prob_thd as background threshold
# (VOC21, PC60, COCO-Object 0.1, else 0); 80 OpenAI templates; no PAMR (eval_all.sh: --pamr off).
# Per dataset (leaf configs): global_weight, mean_vector_weight, h_threshold; VOC20 and Cityscapes
# skip the singular-value stretch; Cityscapes uses each window's CLS as the image prior.
#
# DINO: the official DINO ViT-B/8 checkpoint (dino_vitbase8_pretrain.pth, the file the official
# code downloads), read from a local path; nothing is downloaded. Another path with
#   --cfg-options features.dino.weights=/path/to/dino_vitbase8_pretrain.pth
# output='k': the last block's keys; denorm='cass_official': the image the official code gives
# DINO (CLIP-normalised, un-normalised with ImageNet's mean/std incl. its 0.255 std typo,
# truncated to uint8); square_input=True: windows resized to a square of their short side (PIL
# bicubic) as the official code does; pos_interp='dino': DINO's own position interpolation.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='cass', gaussian_std=5.0, global_weight=0.0, mean_vector_weight=0.0, h_threshold=0.0)
features = dict(
    dino=dict(
        type='timm_vit',
        model_name='vit_base_patch8_224.dino',
        weights='checkpoints/dino_vitbase8_pretrain.pth',
        pos_interp='dino',
        output='k',
        denorm='cass_official',
        square_input=True,
    ),
)
preprocess = dict(short_side=336)
windows = dict(
    crop=224,
    stride=112,
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=40.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
)
