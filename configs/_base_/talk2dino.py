# Talk2DINO base protocol.
# Paper: Talk2DINO: "Talking to DINO: Bridging Self-Supervised Vision Backbones with Language for
#   Open-Vocabulary Segmentation" (Barsellotti et al., ICCV 2025).
# Official code: https://github.com/lorebianchi98/Talk2DINO (protocol read at commit 4918c2d).
# Protocol (src/open_vocabulary_segmentation/configs/<dataset>/dinotext_*_vitb_mlp_infonce.yml +
# eval_*_pamr.yml (the README's evaluation commands) + segmentation/configs/_base_/datasets/*.py +
# models/dinotext/dinotext.py + configs/vitb_mlp_infonce.yaml): DINOv2 ViT-B/14 with 4 registers
# (torch.hub 'dinov2_vitb14_reg'); CLIP ViT-B/16 (OpenAI) text embeddings, the mean over the 7
# sub_imagenet templates of the unnormalised embeddings, mapped into DINOv2's patch space by the
# trained projection (linear 512 -> 768, tanh, linear 768 -> 768); scores sigmoid(cos) of the
# normalised patch tokens and the normalised projected text; short side 448 (mmcv
# img_scale=(2048, 448)); slide 448 / stride 224, every window squashed to 448 x 448 (bilinear, no
# antialiasing) before DINOv2; ImageNet mean/std; scores resized to the window with
# align_corners=True; PAMR 10 steps, dilations 1, 2, 4, 8, 12, 24 (here once on the stitched
# canvas: refine_at='model'; officially per window before stitching); decode: softmax of the
# averaged scores (logit_scale 1), with a constant background score bg_thresh in front where the
# dataset has a background class (leaf configs: 0.55 for VOC21, PC60, COCO-Object); background
# cleaning (lambda 0.2) on VOC21 and COCO-Object (leaf configs).
# CLIP's vision tower is not used (the head says so and the segmenter skips it).
#
# Weights, read from local files (nothing is downloaded; paths relative to the working directory):
#   checkpoints/talk2dino_vitb_mlp_infonce.pth: the official weights/vitb_mlp_infonce.pth
#     (another path: --cfg-options head.checkpoint=/path/to/vitb_mlp_infonce.pth);
#   checkpoints/dinov2_vitb14_reg4_pretrain.pth: the file torch.hub's 'dinov2_vitb14_reg' downloads
#     (another path: --cfg-options features.dino.weights=/path/to/dinov2_vitb14_reg4_pretrain.pth).
# pos_interp='dino': DINOv2's own position-embedding resize (bicubic, scale_factor with the +0.1
# offset, no antialiasing), as the torch.hub model; timm's resize antialiases and differs.
# output='tokens+cls_attn': the final-norm patch tokens and the last block's CLS attention logits.
# input_size=(448, 448): the official squash; input_size=None keeps each window's aspect (cropped
# down to a multiple of 14). bgr=True would feed DINOv2 BGR (the official demo's input), not the
# published RGB.
backbone = dict(
    clip_model='ViT-B-16',
    pretrained='openai',
    pos_interp='scale_factor',
)
head = dict(
    type='talk2dino',
    checkpoint='checkpoints/talk2dino_vitb_mlp_infonce.pth',
    bg_clean=False,
    lambda_bg=0.2,
    act='tanh',
)
features = dict(
    dino=dict(
        type='timm_vit',
        model_name='vit_base_patch14_reg4_dinov2.lvd142m',
        weights='checkpoints/dinov2_vitb14_reg4_pretrain.pth',
        pos_interp='dino',
        output='tokens+cls_attn',
        input_size=(448, 448),
        resize_mode='bilinear',
    ),
)
preprocess = dict(short_side=448)
windows = dict(
    crop=448,
    stride=224,
)
# sub_imagenet_template (datasets/templates.py); the mean of the raw embeddings
text_encoder = dict(
    templates=['itap of a {}.', 'a bad photo of a {}.', 'a origami {}.', 'a photo of the large {}.',
               'a {} in a video game.', 'art of the {}.', 'a photo of the small {}.'],
    average='raw',
)
refiners = [dict(type='pamr', steps=10, dilations=(1, 2, 4, 8, 12, 24))]
runtime = dict(refine_at='model')
decode = dict(
    logit_scale=1.0,
    background_threshold=0.0,
    area_threshold=None,
    renormalize=False,
    rules=[],
)
