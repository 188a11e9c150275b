# Talk2DINO training, the published ViT-B recipe (Barsellotti et al., ICCV 2025), as an mmengine Runner config.
# Official code: https://github.com/lorebianchi98/Talk2DINO (train.py, src/train_util.py, src/loss.py, src/model.py,
# dino_extraction_v2.py, text_features_extraction.py, configs/vitb_mlp_infonce.yaml; read at commit 4918c2d).
# Run: python tools/train_head.py configs/train/talk2dino_vitb.py --work-dir work_dirs/talk2dino
# Recipe: COCO 2014 train captions, one sample per caption; DINOv2 ViT-B/14 with 4 registers (torch.hub
# 'dinov2_vitb14_reg') on the image resized to short side 448 (bicubic) and centre-cropped to 448 x 448; per head of
# its last block, the CLS-attention-weighted mean of the final-norm patch tokens (logits q.k * 0.125, softmax over
# the patches; registers excluded); CLIP ViT-B/16 (OpenAI) unnormalised encode_text of the caption, projected by
# linear 512 -> 768, tanh, linear 768 -> 768; for each pair the head closest to its own caption (max_score);
# symmetric InfoNCE on the cosines with temperature 0.07 (fixed), divided by B^2 as the official loss; Adam lr 1e-4,
# no weight decay, no schedule, batch 128, 100 epochs (COCO 2014 train has 414,113 captions: 3,236 iterations per
# epoch, 323,600 in all), seed 123, the last projection kept. See ovdense/train/talk2dino.py.
# Differences: the official code extracts the DINOv2 features once, before training; here they are computed on the
# fly (frozen, no augmentation) and, with cache_visual, kept per image after the first epoch (82,783 images x 12
# heads x 768 floats = 3 GB of memory; set cache_visual=False to save it). Batches are drawn by mmengine's
# InfiniteSampler (shuffled), not torch's per-epoch shuffle.
# Local files, relative to the working directory (nothing is downloaded):
#   checkpoints/clip_vit_b16_openai.pt                 OpenAI's ViT-B-16.pt (the file clip.load('ViT-B/16') fetches)
#   checkpoints/dinov2_vitb14_reg4_pretrain.pth        the file torch.hub's 'dinov2_vitb14_reg' downloads
#   data/coco/annotations/captions_train2014.json      COCO 2014 captions
#   data/coco/train2014                                COCO 2014 training images
# The projection comes out as work_dir/talk2dino_last.pth (the official weights/vitb_mlp_infonce.pth layout: the bare
# ProjectionLayer state dict); evaluate it with --cfg-options head.checkpoint=work_dirs/talk2dino/talk2dino_last.pth
# on configs/talk2dino/*.
default_scope = 'ovdense'

model = dict(
    type='Talk2DINOTrainer',
    clip=dict(clip_model=None, pretrained='checkpoints/clip_vit_b16_openai.pt', weights_format='openai'),
    dino=dict(type='timm_vit', model_name='vit_base_patch14_reg4_dinov2.lvd142m',
              weights='checkpoints/dinov2_vitb14_reg4_pretrain.pth', pos_interp='dino', output='tokens+cls_attn'),
    projection=dict(hidden_layers=1, act='tanh'),
    temperature=0.07,
    attn_scale=0.125,
    loss_scale='batch_sq',
    cache_visual=True,
)

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='COCOCaptions', ann_file='data/coco/annotations/captions_train2014.json',
                 img_dir='data/coco/train2014', short_side=448, crop=448),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=323600)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4))
param_scheduler = []

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3236, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [dict(type='HeadExportHook', filename='talk2dino_last.pth')]
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=123)
log_level = 'INFO'
load_from = None
resume = False
