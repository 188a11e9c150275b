# Low-latency configuration for 640x480 camera frames (robots). NOT a published protocol: no
# paper reports a number for it and no dataset is attached; it trades accuracy for latency.
# Head: SCLIP, from "SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference"
# (Wang, Mei and Yuille, ECCV 2024). Official code: https://github.com/wangf3014/SCLIP.
# Against SCLIP's protocol (_base_/sclip.py): one whole-image pass instead of 224/112 windows,
# short side 224 instead of 336 (640x480 -> 224x299, 14x18 tokens), window batch 1. Same
# templates; decoding as SCLIP's VOC21 leaf (scale 65, background threshold 0.1) without its
# area rule (it needs a second pass over the logits); no refiners.
# Measured with `ovdense benchmark --latency --config latency_640x480` (configs/README.md).
# Use it as: seg = OVSegmenter.from_config('latency_640x480', classes=[...]); seg.warmup((480, 640));
# vocab = seg.encode_vocabulary([...]) once, then seg.predict(frame, vocabulary=vocab,
# resolution='model') per frame (the label map at 224x299; 'input' gives 480x640, slower).
# Every stage here fits FixedSizePredictor: fast = seg.fixed_size(_frame_size, vocab) then fast(frame)
# per frame (the same labels; cuda_graph=True on CUDA). Timed by `--latency --fixed-size`.
_base_ = ['../_base_/sclip.py']

preprocess = dict(short_side=224)
windows = dict(crop=0)
refiners = []
decode = dict(logit_scale=65.0, background_threshold=0.1, area_threshold=None, renormalize=False)
runtime = dict(batch_size=1)
classes = dict(names='../names/cls_voc21.txt', background='first')
#: (height, width) of the camera frames: the size to pass to warmup() and the benchmark's default.
_frame_size = (480, 640)
