# SYNTHETIC ONLY: SAM detection on the synthetic world v2 with the tiny models this repository
# trained (tests/fixtures: the tiny CLIP v2, the tiny SAM). Not a published protocol and
# meaningless on real photos; it needs a repository checkout (the fixtures are not in the wheel).
# Use: ovdense detect scenes/ --config configs/synthetic/sam_detect_world_v2.py
#      Detector.from_config('configs/synthetic/sam_detect_world_v2.py')
#
# SAM's automatic-mask thresholds are lowered for the tiny SAM: its IoU head is not calibrated
# (predicted IoUs rarely reach SAM's 0.88) and objects here are small, so SAM's defaults
# (32 points, pred_iou_thresh 0.88, stability_score_thresh 0.95) keep about 2.6 masks per
# 160 x 224 scene, recall@0.75 0.10. 16 points per side with both thresholds at 0 keep about
# 110, recall@0.75 0.76 (tests/fixtures/synth_sam/README.md). Keep SAM's defaults for real
# SAM weights. Regions are classified by MaskCLIP features pooled inside each mask and ranked
# by class probability x SAM's predicted IoU.
_fixtures = '{{ fileDirname }}/../../tests/fixtures'
backbone = dict(
    clip_model=_fixtures + '/synth_clip_v2/synth-vit-tiny-v2.json',
    pretrained=_fixtures + '/synth_clip_v2/synth_clip.pt',
    weights_format='open_clip',
)
head = dict(type='maskclip')
preprocess = dict(short_side=None)
windows = dict(crop=64, stride=32)
features = dict(sam=dict(
    type='sam',
    model_config=_fixtures + '/synth_sam/model.json',
    checkpoint=_fixtures + '/synth_sam/synth_sam.pt',
))
refiners = []
decode = dict(logit_scale=40.0)
text_encoder = dict(templates=['a photo of a {}.'])
classes = dict(names='../names/world_v2.txt')
detector = dict(
    proposals=dict(type='sam_automatic', points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    scorer=dict(type='mask_pooling', confidence='probability_x_proposal'),
    max_detections=100,
)
