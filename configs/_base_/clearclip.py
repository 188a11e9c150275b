# ClearCLIP base protocol.
# Paper: ClearCLIP: "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference" (Lan et al., ECCV 2024).
# Official code: https://github.com/mc-lan/ClearCLIP (protocol read at commit ad68a40).
# Head 'clearclip' is the paper's method (q-q attention, no residual, no MLP). Note: the repo's
# configs/base_config.py evaluates model_type='vanilla' (q-k attention); that variant is the
# head 'clearclip_repo_default' (swap it in with head=dict(type='clearclip_repo_default')).
# Protocol (clearclip_segmentor.py defaults + configs/cfg_*.py): short side 448 everywhere,
# sliding window 448 / stride 224, windows zero-padded (centred) to a multiple of 16,
# softmax(50 * cos); plain class names with a literal 'background' and no synonyms.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(type='clearclip')
preprocess = dict(short_side=448)
windows = dict(
    crop=448,
    stride=224,
    pad_to=16,
)
text_encoder = dict(templates='openai80')
refiners = []
decode = dict(
    logit_scale=50.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
)
