# CLIP-DINOiser training (Wysoczańska et al., ECCV 2024; https://github.com/wysoczanska/clip_dinoiser) on the
# SYNTHETIC world v2, CPU-sized: the tiny CLIP v2 fixture (tests/fixtures/synth_clip_v2, 6 blocks, width 128,
# patch 8) learns its two convolutions from the tiny DINO fixture (tests/fixtures/synth_dino, patch 8) as teacher,
# on 64 px random crops of world v2 training-range scenes rendered on the fly (no files). The recipe of
# configs/train/dinoiser_vitb16.py scaled down: obj_proj 128 wide (the tiny CLIP's width), block -3, batch 16,
# the same losses (FOUND-style training-free background target, see ovdense/train/dinoiser.py), AdamW with a
# 200x lr for bkg_decoder, the lr x 0.1 at 80 % of the iterations; the base lr is 1e-3 (20x the published 5e-5:
# far fewer iterations). Paths are relative to the repository root (run it from there):
#   python tools/train_head.py configs/train/dinoiser_world_v2.py --work-dir work_dirs/dinoiser_world_v2 --threads 2
default_scope = 'ovdense'

model = dict(
    type='DINOiserTrainer',
    backbone=dict(clip_model='tests/fixtures/synth_clip_v2/synth-vit-tiny-v2.json',
                  pretrained='tests/fixtures/synth_clip_v2/synth_clip.pt', weights_format='open_clip'),
    teacher=dict(type='timm_vit', model_name='vit_small_patch16_224.dino', weights='tests/fixtures/synth_dino/synth_dino.pt',
                 model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, img_size=64)),
    head=dict(gamma=0.2, feats_idx=-3, in_dim=128, conv_kernel=3, seed=0),
    corr_feats='v',
    bkg_tau=0.3,
)

train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='WorldV2Images', num_scenes=2000, start=0, world_seed=0, crop=64, short_side=None,
                 hflip=0.5, brightness=0.0, seed=0),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=600)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'head.bkg_decoder': dict(lr_mult=200.0)}),
)
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[480], gamma=0.1)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [dict(type='HeadExportHook', filename='dinoiser_last.pt')]
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
