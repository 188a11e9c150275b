# Talk2DINO training (Barsellotti et al., ICCV 2025; https://github.com/lorebianchi98/Talk2DINO) on the SYNTHETIC
# world v2, CPU-sized: the text tower of the tiny CLIP v2 fixture (tests/fixtures/synth_clip_v2, 128-d text
# embeddings) and the tiny DINO fixture (tests/fixtures/synth_dino: patch 8, width 96, 3 heads, 4 blocks) as the
# visual side. The tiny DINO is a DINO v1-style timm ViT (class token, no registers), not a DINOv2; that is fine for
# the synthetic run: the objective only needs the last block's CLS attention and final-norm patch tokens, which
# the timm_vit provider gives for either. The projection is 128 -> 96, tanh, 96 -> 96. Data: whole 160 x 224
# training-range scenes (2000, rendered on the fly) with their captions (object order shuffled per read), no crop
# (the caption names every object). The recipe of configs/train/talk2dino_vitb.py scaled down: the same loss
# (per-head CLS-attention pooling, best head per pair, InfoNCE at temperature 0.07), batch 128, Adam without
# schedule; loss_scale='none' logs the plain InfoNCE (the official / B^2 prints 0.0003 at batch 128; Adam's update
# is nearly invariant to the factor); the lr is 1e-3 (10x the published 1e-4: far fewer iterations). attn_scale=None: the tiny block's own
# scale (32 ** -0.5; the official 0.125 is ViT-B/L's 64 ** -0.5). Paths are relative to the repository root:
#   python tools/train_head.py configs/train/talk2dino_world_v2.py --work-dir work_dirs/talk2dino_world_v2 --threads 2
default_scope = 'ovdense'

model = dict(
    type='Talk2DINOTrainer',
    clip=dict(clip_model='tests/fixtures/synth_clip_v2/synth-vit-tiny-v2.json',
              pretrained='tests/fixtures/synth_clip_v2/synth_clip.pt', weights_format='open_clip'),
    dino=dict(type='timm_vit', model_name='vit_small_patch16_224.dino', weights='tests/fixtures/synth_dino/synth_dino.pt',
              model_kwargs=dict(patch_size=8, embed_dim=96, depth=4, num_heads=3, img_size=64),
              output='tokens+cls_attn'),
    projection=dict(hidden_layers=1, act='tanh', seed=0),
    temperature=0.07,
    attn_scale=None,
    loss_scale='none',
    cache_visual=True,
)

train_dataloader = dict(
    batch_size=128,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='WorldV2Captions', num_scenes=2000, start=0, world_seed=0, shuffle_captions=True, seed=0),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = []

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=25),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [dict(type='HeadExportHook', filename='talk2dino_last.pth')]
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
log_level = 'INFO'
load_from = None
resume = False
