# CLIP-DINOiser base protocol.
# Paper: CLIP-DINOiser: "CLIP-DINOiser: Teaching CLIP a few DINO tricks for open-vocabulary semantic
#   segmentation" (Wysoczańska et al., ECCV 2024).
# Official code: https://github.com/wysoczanska/clip_dinoiser (protocol read at commit a954aae).
# Protocol (configs/clip_dinoiser.yaml + configs/maskclip.yaml + main_eval.py +
# segmentation/configs/_base_/datasets/*.py): open_clip ViT-B-16 with the LAION weights
# laion2b_s34b_b88k (not OpenAI; GELU), bicubic positional-embedding resize with size=;
# MaskCLIP value path (residual and MLP kept) pooled with the affinities of a 3x3 conv on the
# ln_2 output of block -3 (gamma 0.2); every dataset: short side 448 (mmcv img_scale=(2048, 448)),
# slide 448 / stride 224; windows padded to x16 with black at the bottom/right before normalisation
# (make_input_divisible; no window is padded at 448 px); images /255 and normalised with OpenAI's
# mean/std (exact values below); softmax(100 * cos) per window, the window probabilities averaged
# (mmseg-0.x slide inference) and softmaxed (decode logit_scale=1.0 over the head's window
# probabilities); the 80 ImageNet templates; class names = the mmseg datasets' CLASSES.
# FOUND background (delta 0.99, background where b <= 0.5) only on VOC21 and COCO-Object (leaf configs).
#
# The trained convolutions: the official checkpoints/last.pt, read from a local file (nothing is
# downloaded). The path below is relative to the working directory; give another with
#   --cfg-options head.checkpoint=/path/to/last.pt
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='laion2b_s34b_b88k',
    pos_interp='size',
)
head = dict(
    type='dinoiser',
    checkpoint='checkpoints/clip_dinoiser_last.pt',
    gamma=0.2,
    feats_idx=-3,
    window_scores='probabilities',
    prob_scale=100.0,
)
# OpenAI's mean/std x 255, unrounded (the official T.Normalize on [0, 1] images)
preprocess = dict(
    short_side=448,
    mean=(122.7709383, 116.7460125, 104.09373615),
    std=(68.5005327, 66.6321579, 70.3231630),
)
windows = dict(
    crop=448,
    stride=224,
    pad_to=16,
    pad_mode='end',
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=1.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
    rules=[],
)
