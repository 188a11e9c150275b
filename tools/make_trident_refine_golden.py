"""Make tests/fixtures/goldens/trident_refine.npz by running the official Trident SAM refinement.

Same scratch export of the official code as tools/make_trident_golden.py (its docstring), and the
real ``skimage`` (the official ``split_connected_regions`` uses ``skimage.measure.label``), e.g.
``pip install --target /tmp/skimage_pkgs --no-deps scikit-image lazy_loader imageio tifffile``::

    PYTHONPATH=/tmp/skimage_pkgs python tools/make_trident_refine_golden.py --official /tmp/trident_official

What it runs (YuHengsss/Trident, commit a93b346), fp32 on the CPU, with the tiny SAM of
tools/make_trident_golden.py (1024 px, patch 16; image encoder weights from there) and a prompt
encoder / mask decoder of random weights (fp16 values, stored here), whose IoU head's last bias is
raised so that its predictions straddle the 0.9 threshold (some prompts kept, some failed):

* ``seg_utils.utils.sam_refinement`` on a ``SamPredictor`` set (``set_image``) on the image cv2-resized
  to multiples of 16 (what ``get_trident_seg`` leaves in ``self.sam_predictor``), the image given by
  its path (``cv2.imread``). Inputs (not stored; the test rebuilds them): the Trident golden's
  logits (``trident.npz``, ``<case>_logits``, a 1::3 subsample) resized bilinearly to the image,
  ``softmax(40 x)``, labels = argmax. Cases (``REFINE_CASES``): the official parameters and
  variants reaching the other branches (cells below ``coarse_thresh``, ``coarse_thresh=0``, small
  regions). The segmentations' ``.half()`` runs for real (labels < 7).
* end to end (``e2e_<case>``): the official ``get_trident_seg`` + ``postprocess_result`` with
  ``sam_refine`` on (official parameters), as make_trident_golden.py runs it (``Tensor.half`` a
  no-op during ``get_trident_seg`` only).

Stored: the prompt encoder / mask decoder weights, the official SAM embedding of the wide image
(``predictor.features`` after ``set_image``, float32) and per case: refined labels (int8, full
size), refined probabilities (float32, on a ``1::3`` pixel subsample) and SAM's IoU predictions
of every prompt (unit cases).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_trident_golden as base  # noqa: E402

GOLDENS = base.GOLDENS
#: case -> (image, logits of trident.npz, coarse_thresh, minimal_area, sam_mask_coff, sam_iou_thresh)
REFINE_CASES = {
    "square": ("square", "square", 0.10, 225, 0.005, 0.9),
    "wide": ("wide", "wide", 0.10, 225, 0.005, 0.9),
    "city": ("wide", "city", 0.10, 225, 0.005, 0.9),
    "wide_coarse": ("wide", "wide", 0.6, 20, 0.05, 0.9),
    "square_zero": ("square", "square", 0.0, 10, 0.005, 0.9),
}
E2E_CASES = ("square", "city")
IOU_BIAS = 0.9
LOGIT_SCALE = 40.0


def refine_inputs(logits: np.ndarray, size) -> tuple:
    """The unit cases' inputs: ``(labels [1, H, W] int64, probs [C, H, W])`` from subsampled logits."""
    x = F.interpolate(torch.from_numpy(logits)[None].float(), size=tuple(size), mode="bilinear",
                      align_corners=False)[0]
    probs = (x * LOGIT_SCALE).softmax(0)
    return probs.argmax(0, keepdim=True), probs


def prompt_weights(sam) -> dict:
    """Random prompt encoder / mask decoder weights (fp16 values), IoU head biased to ~0.9."""
    torch.manual_seed(2468)
    state = {}
    for prefix, module in (("prompt_encoder", sam.prompt_encoder), ("mask_decoder", sam.mask_decoder)):
        for key, value in module.state_dict().items():
            value = value.clone()
            if value.is_floating_point():
                if key.endswith("bias"):
                    value.normal_(0, 0.05)
                elif "norm" in key and value.ndim == 1:
                    value.normal_(1.0, 0.1)
                elif value.ndim == 0 or key.endswith("gaussian_matrix"):
                    pass
                else:
                    value.normal_(0, 0.5 / max(value[0].numel(), 1) ** 0.5)
            if prefix == "mask_decoder" and key.startswith("iou_prediction_head.layers.") and key.endswith("bias") \
                    and key.split(".")[2] == str(len(module.iou_prediction_head.layers) - 1):
                value += IOU_BIAS
            state[f"{prefix}.{key}"] = value.half().float() if value.is_floating_point() else value
    for prefix, module in (("prompt_encoder", sam.prompt_encoder), ("mask_decoder", sam.mask_decoder)):
        module.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, help="folder with the exported official Trident files")
    parser.add_argument("--out", default=str(GOLDENS / "trident_refine.npz"))
    args = parser.parse_args()
    official = Path(args.official).resolve()
    sys.path.insert(0, str(official))
    import skimage.measure  # noqa: F401  (the real one: the official region split; stub_modules keeps it)

    base.stub_modules()
    import cv2

    import dino_vits  # noqa: E402
    import trident  # noqa: E402
    from myutils import UnNormalize  # noqa: E402
    from open_clip.model import build_model_from_openai_state_dict  # noqa: E402
    from seg_utils.utils import sam_refinement  # noqa: E402
    from segment_anything import SamPredictor, modeling  # noqa: E402
    from torchvision import transforms

    assert str(official) in str(Path(modeling.__file__))
    torch.set_grad_enabled(False)
    ref = dict(np.load(GOLDENS / "trident.npz"))
    images = base.make_images()
    for name, img in images.items():
        assert np.array_equal(img, ref[f"image_{name}"]), name
    sam, _ = base.tiny_sam(modeling)
    state = prompt_weights(sam)
    out = {k: v.half().numpy() for k, v in state.items() if v.is_floating_point()}
    half = torch.Tensor.half
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, rgb in images.items():
            paths[name] = str(Path(tmp) / f"{name}.png")
            cv2.imwrite(paths[name], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        for case, (image, logits_of, coarse, area, coff, iou_thresh) in REFINE_CASES.items():
            rgb = images[image]
            h, w = rgb.shape[:2]
            labels, probs = refine_inputs(ref[f"{logits_of}_logits"], (h, w))
            predictor = SamPredictor(sam)
            predictor.set_image(cv2.resize(rgb, (-(-w // 16) * 16, -(-h // 16) * 16)))
            ious = []
            predict = predictor.predict_torch

            def spy(*a, **k):
                result = predict(*a, **k)
                ious.append(result[1][:, 0].clone())
                return result

            predictor.predict_torch = spy
            if image == "wide":  # the official embedding (fast tests start from it)
                out["embedding_wide"] = predictor.features.numpy().astype(np.float32)
            masks, _, refined, _ = sam_refinement(paths[image], labels.clone(), probs.clone(), probs.shape[0],
                                                  predictor, coarse, area, coff, iou_thresh)
            masks = masks.reshape(h, w)
            iou = torch.cat(ious) if ious else torch.zeros(0)
            out[f"{case}_labels"] = masks.numpy().astype(np.int8)
            out[f"{case}_probs"] = refined[:, 1::3, 1::3].numpy().astype(np.float32)
            out[f"{case}_iou"] = iou.numpy().astype(np.float32)
            changed = float((masks != labels[0]).float().mean())
            print(f"{case}: prompts {iou.numel()}, kept {int((iou > iou_thresh).sum())}, iou "
                  f"[{float(iou.min()) if iou.numel() else 0:.3f}, {float(iou.max()) if iou.numel() else 0:.3f}], "
                  f"labels changed {changed:.3f}, zero prob pixels {float((refined.sum(0) == 0).float().mean()):.3f}")
        # end to end: the official Trident with --sam_refine (official parameters)
        inputs = np.load(GOLDENS / "inputs.npz")
        clip_state = torch.load(GOLDENS / "tiny_openai_clip.pt", map_location="cpu", weights_only=False)
        clip = build_model_from_openai_state_dict(dict(clip_state), cast_dtype=torch.float32).float().eval()
        dino, _ = base.tiny_dino(dino_vits)
        for case in E2E_CASES:
            image, short, dataset_type, cos_fac, refine_neg_cos = base.CASES[case]
            rgb = images[image]
            seg = trident.Trident.__new__(trident.Trident)
            torch.nn.Module.__init__(seg)
            seg.clip, seg.clip_stride = clip, 16
            seg.vfm_model, seg.vfm = "dino", dino
            seg.unnorm = UnNormalize([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
            seg.norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
            seg.query_features = torch.from_numpy(inputs["Q"]).float()
            seg.query_idx = torch.arange(seg.query_features.shape[0])
            seg.dataset_type = dataset_type
            seg.slide_stride, seg.slide_crop = base.STRIDE, base.CROP
            seg.beta, seg.gamma, seg.cos_fac, seg.refine_neg_cos = 1.2, 3.0, cos_fac, refine_neg_cos
            seg.sam, seg.sam_heads = sam, base.SAM_CONFIG["encoder_num_heads"]
            seg.sam_predictor = SamPredictor(sam)
            seg.sam_refine, seg.coarse_thresh, seg.minimal_area, seg.sam_mask_coff = True, 0.10, 225, 0.005
            seg.sam_iou_thresh, seg.logit_scale, seg.prob_thd, seg.debug = 0.9, LOGIT_SCALE, 0.0, True
            hh, ww = base.rescale_size(*rgb.shape[:2], short)
            canvas = cv2.resize(rgb, (ww, hh), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
            x = ((torch.from_numpy(canvas).float() - torch.from_numpy(base.CLIP_MEAN))
                 / torch.from_numpy(base.CLIP_STD))[None]
            torch.Tensor.half = lambda self, *a, **k: self
            try:
                logits = seg.get_trident_seg(x, paths[image], [dict(ori_shape=rgb.shape[:2])])
            finally:
                torch.Tensor.half = half
            plain = (logits[0] * LOGIT_SCALE).softmax(0).argmax(0)
            pred, refined = seg.postprocess_result(logits, None, debug_img_path=paths[image])
            pred = pred.reshape(rgb.shape[:2])
            out[f"e2e_{case}_labels"] = pred.numpy().astype(np.int8)
            out[f"e2e_{case}_probs"] = refined[:, 1::3, 1::3].numpy().astype(np.float32)
            print(f"e2e {case}: labels changed by the refinement {float((pred != plain).float().mean()):.3f}")
    np.savez_compressed(args.out, **out)
    print("wrote", args.out, Path(args.out).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
