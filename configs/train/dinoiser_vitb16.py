# CLIP-DINOiser training, the published recipe (Wysoczańska et al., ECCV 2024), as an mmengine Runner config.
# Official code: https://github.com/wysoczanska/clip_dinoiser (train.py, configs/clip_dinoiser.yaml, read at
# commit a954aae). Run: python tools/train_head.py configs/train/dinoiser_vitb16.py --work-dir work_dirs/dinoiser
# (or torchrun --nproc_per_node=N tools/train_head.py ... --launcher pytorch, with
#  --cfg-options train_dataloader.batch_size=<16 / N> to keep the published total batch of 16).
# Recipe: 1000 ImageNet-train images (ds_size, drawn with replacement, seed 0), im_size 448 (short side resized to
# 448, random 448 crop, horizontal flip, brightness jitter 0.5), batch 16, 100 epochs = 6300 iterations (63 batches
# per epoch), AdamW lr 5e-5 for obj_proj and 1e-2 for bkg_decoder (lr_mult 200), weight decay 0.01 (torch's
# default), the lr x 0.1 after iteration 5000 (MultiStepLR milestones [5000]); losses: BCEWithLogits of the
# predicted correlations (negatives zeroed) against DINO ViT-B/16 last-block value correlations >= 0.2
# (enc_type_feats 'v'), plus BCEWithLogits of the background logits against a hard foreground map.
# SUBSTITUTION: the official foreground map is the trained FOUND decoder's (> 0.5); FOUND's weights are not used
# here. The map is FOUND's training-free background discovery on the DINO teacher (the patch least attended by the
# CLS token is the seed; background = key cosine to the seed > 0.3), see ovdense/train/dinoiser.py.
# Local files, relative to the working directory (nothing is downloaded):
#   checkpoints/open_clip_vit_b16_laion2b_s34b_b88k.bin   open_clip ViT-B-16 laion2b_s34b_b88k weights
#   checkpoints/dino_vitbase16_pretrain.pth              the official DINO ViT-B/16 weights
#   data/imagenet/train                                   ImageNet's training images (any folder of images)
# The head comes out as work_dir/dinoiser_last.pt (the official last.pt layout); evaluate it with
#   --cfg-options head.checkpoint=work_dirs/dinoiser/dinoiser_last.pt on configs/dinoiser/*.
default_scope = 'ovdense'

model = dict(
    type='DINOiserTrainer',
    backbone=dict(clip_model='ViT-B-16', pretrained='checkpoints/open_clip_vit_b16_laion2b_s34b_b88k.bin',
                  weights_format='open_clip', pos_interp='size'),
    teacher=dict(type='timm_vit', model_name='vit_base_patch16_224.dino',
                 weights='checkpoints/dino_vitbase16_pretrain.pth', pos_interp='dino'),
    head=dict(gamma=0.2, feats_idx=-3, in_dim=256, conv_kernel=3, seed=0),
    corr_feats='v',
    bkg_tau=0.3,
)

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolder', root='data/imagenet/train', crop=448, short_side=448, hflip=0.5,
                 brightness=0.5, num_images=1000, seed=0),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6300)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'head.bkg_decoder': dict(lr_mult=200.0)}),
)
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[5000], gamma=0.1)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [dict(type='HeadExportHook', filename='dinoiser_last.pt')]
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=True, dist_cfg=dict(backend='nccl'))
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
