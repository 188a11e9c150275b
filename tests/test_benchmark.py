"""The benchmark tool runs end to end, the fast path equals the reference-style baseline, and
the roofline's FLOP count is right."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import ovdense
from ovdense.bench import benchmark, roofline
from ovdense.cli import main
from conftest import TINY_CONFIG


@pytest.mark.slow
def test_benchmark_fast_path_equals_plain_baseline(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--clip-model", str(TINY_CONFIG), "--pretrained", "none", "--size", "120x90",
                 "--repeats", "1", "--device", "cpu", "--batch-sizes", "1", "2", "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    assert [r["head"] for r in info["rows"]] == ["vanilla", "maskclip", "sclip", "clearclip", "naclip"]
    for row in info["rows"]:
        assert row["dtype"] == "float32"
        assert row["labels_identical"] and row["label_agreement"] == 1.0, row["head"]
        assert row["max_logit_diff"] < 1e-4, row
        assert row["images_per_s"] > 0 and row["text_ms_cached"] < row["text_ms_cold"]
        assert set(row["stages_ms"]) >= {"windows", "backbone", "head", "logits", "refine", "decode", "text_cached"}
        assert [t["batch"] for t in row["throughput"]] == [1, 2]
        assert all(t["images_per_s"] > 0 and t["peak_memory_mb"] > 0 for t in row["throughput"])
        roof = row["roofline"]
        assert roof["backbone_gflop_per_image"] > 0 and roof["matmul_peak_gflops_per_s"] > 0
        assert roof["windows_per_pass"] == row["windows"] * roof["images_per_pass"]
        assert roof["images_per_pass"] == max(row["throughput"], key=lambda t: t["images_per_s"])["batch"]
        assert roof["nominal_bf16_tflops"] is None  # CPU
        assert 0 < row["speedup_bound_backbone_at_peak"] < row["speedup_ceiling_matmuls_only"]
    by_head = {r["head"]: r for r in info["rows"]}
    assert by_head["naclip"]["stages_ms"]["refine"] > 0 and by_head["sclip"]["stages_ms"]["refine"] < \
        by_head["naclip"]["stages_ms"]["refine"]
    # 90x120 -> 336x448: 6 windows of 224; the whole-image MaskCLIP pass at 512 is one window
    assert by_head["sclip"]["windows"] == 6 and by_head["maskclip"]["windows"] == 1
    table = (out / "benchmark.md").read_text()
    assert "21 classes, 56 queries x 80 templates" in info["classes"]
    assert "| sclip | float32 | 6 |" in table and "Backbone roofline" in table and "Throughput" in table


def _tiny_proxyclip(image_size=(90, 120)):
    """The proxyclip protocol on the tiny CLIP and the --tiny-vfm DINO, a random image and a
    vocabulary with random embeddings (no text encoding)."""
    torch.manual_seed(0)
    bb = ovdense.CLIPBackbone.load(str(TINY_CONFIG), None)
    providers = benchmark.build_providers(benchmark.provider_specs("proxyclip", None, tiny=True), torch.device("cpu"))
    seg = benchmark.build_segmenter("proxyclip", bb, torch.device("cpu"), torch.float32, {}, providers=providers)
    classes = [["sky", "wall"], ["cat"], ["dog", "puppy"], ["car"]]
    seg.set_classes(classes, background="first", embeddings=torch.randn(6, bb.embed_dim))
    image = np.random.default_rng(0).integers(0, 255, (*image_size, 3), dtype=np.uint8)
    return seg, providers, classes, image


def test_proxyclip_official_style_baseline_equals_the_fast_path():
    """Tiny models, the 336 px protocol (a 120x90 image -> 448x336, two 336 windows, 42 x 42 DINO
    tokens each): the official-style window-by-window path and OVSegmenter give the same query
    logits and labels; the official's hooks accumulate on its own copy of the VFM only."""
    seg, providers, classes, image = _tiny_proxyclip()
    official = benchmark.official_style(seg)
    assert isinstance(official, benchmark.OfficialProxyCLIP)
    assert seg.features["vfm"] is providers["vfm"] and official.model is not providers["vfm"].model
    feats = seg.encode_image(image)
    assert len(feats.boxes) == 2 and feats.window_size == (336, 336) and feats.pad == (0, 0, 0, 0)
    assert feats.features.shape[-2:] == (42, 42)
    base = benchmark.plain_baseline(seg, image, classes, official)
    fast = seg.query_logits(feats)
    assert base["logits"].shape == fast.shape == (6, 90, 120)
    # the two continuous parts of the parity: DINO's features, and everything after them
    x = seg.preprocess(image)
    official_feats = torch.cat([official.vfm(x[None, :, y1:y2, x1:x2]) for y1, y2, x1, x2 in feats.boxes])
    parity = benchmark.official_parity(seg, image, classes, official, fast, feats.aux["vfm"], official_feats)
    assert parity["ok"] and parity["logit_diff_same_vfm"] <= benchmark.PARITY_TOL
    assert parity["vfm_rel_diff"] <= benchmark.PARITY_TOL and parity["threshold_entries"] == 2 * 1764 ** 2
    # end to end: equal unless rounding moved an affinity across ProxyCLIP's threshold (none here)
    assert parity["threshold_flips"] == 0
    assert (base["logits"] - fast).abs().max() <= benchmark.PARITY_TOL
    assert (base["labels"] == seg.predict(image).label_map).all()
    # one hook per window and call, never removed, and none on the fast path's provider
    assert official.hooks == 4 and len(official.model.blocks[-1].attn.qkv._forward_hooks) == 4
    assert not providers["vfm"].model.blocks[-1].attn.qkv._forward_hooks
    assert not any(blk.attn.fused_attn for blk in official.model.blocks)  # DINO's explicit attention
    assert all(blk.attn.fused_attn for blk in providers["vfm"].model.blocks)
    # the official UnNormalize constants move DINO's input by ~1e-5: same work, a few flipped thresholds
    off = benchmark.OfficialProxyCLIP(seg, official_unnorm=True)
    crop = seg.preprocess(image)[None, :, :336, :336]
    assert 0 < (off.vfm(crop) - official.vfm(crop)).abs().max() < 1e-3


def _tiny_cass(image_size=(100, 120)):
    """The cass protocol on the tiny CLIP and the --tiny-vfm DINO (CLIP's width, 64), at short side 224
    (a 120x100 image -> 268x224: two 224 windows, 28 x 28 DINO tokens each), with the text adjustment
    and the image prior switched on, and a vocabulary with random embeddings."""
    import dataclasses

    torch.manual_seed(0)
    bb = ovdense.CLIPBackbone.load(str(TINY_CONFIG), None)
    specs = benchmark.provider_specs("cass", None, tiny=True, clip_width=bb.visual.conv1.out_channels)
    providers = benchmark.build_providers(specs, torch.device("cpu"))
    seg = benchmark.build_segmenter("cass", bb, torch.device("cpu"), torch.float32, {}, providers=providers)
    seg.preprocessor = dataclasses.replace(seg.preprocessor, short_side=224)
    seg.head.global_weight, seg.head.mean_vector_weight, seg.head.h_threshold = 0.25, 0.3, 1.0
    classes = [["sky", "wall"], ["cat"], ["dog", "puppy"], ["car"]]
    seg.set_classes(classes, background="first", embeddings=torch.randn(6, bb.embed_dim))
    image = np.random.default_rng(0).integers(0, 255, (*image_size, 3), dtype=np.uint8)
    return seg, providers, classes, image


def test_cass_official_style_baseline_equals_the_fast_path():
    """The official-style CASS path (window by window: DINO twice per window, CLIP on the window and
    on the whole image, head-by-head spectral fusion) and OVSegmenter give the same logits and
    labels on tiny models; the parity parts and the DINO call count are reported.

    On the provider's DINO keys the two are equal whatever happens; on the official-style keys
    (explicit attention, PIL / torchvision input path: ~4e-7 relative apart) they are equal unless
    the Hungarian head pairing of a window flips, which the tiny models' 2 heads make likely (their
    costs tie to ~1e-8): with a 120x90 image one of the two windows flips and the logits move by 0.1.
    The 120x100 image used here has no flip (``flips == 0``, checked)."""
    from ovdense.bench.official_cass import OfficialCASS
    from ovdense.ops.windows import crop_windows

    seg, providers, classes, image = _tiny_cass()
    assert providers["dino"].model.embed_dim == 64 and seg.backbone.num_heads == 2
    official = benchmark.official_style(seg)
    assert isinstance(official, OfficialCASS) and official.model is not providers["dino"].model
    feats = seg.encode_image(image)
    assert len(feats.boxes) == 2 and feats.window_size == (224, 224) and feats.aux["dino"].shape == (2, 64, 28, 28)
    fast = seg.query_logits(feats)
    shared = benchmark.plain_baseline(seg, image, classes, official, vfm=feats.aux["dino"])
    assert shared["logits"].shape == fast.shape == (6, 100, 120)
    assert (shared["logits"] - fast).abs().max() <= benchmark.PARITY_TOL
    assert (shared["labels"] == seg.predict(image).label_map).all()
    official.dino_calls = 0
    base = benchmark.plain_baseline(seg, image, classes, official)  # end to end, the official-style DINO
    assert (base["logits"] - fast).abs().max() <= benchmark.PARITY_TOL
    assert (base["labels"] == shared["labels"]).all()
    # two DINO calls per window (the window, and the discarded one of the image prior), a pairing each
    assert official.dino_calls == 4 and len(official.pairings) == 2
    x = seg.preprocess(image)
    official_keys = official.image_vfm(crop_windows(x, feats.boxes, feats.pad), tuple(x.shape[-2:]))
    assert official.dino_calls == 8
    parity = benchmark.official_parity(seg, image, classes, official, fast, feats.aux["dino"], official_keys)
    assert parity["ok"] and parity["flips"] == 0 and parity["flip_entries"] == 2
    assert parity["vfm_rel_diff"] <= benchmark.PARITY_TOL and parity["logit_diff_same_vfm"] <= benchmark.PARITY_TOL
    assert parity["end_to_end_own_keys"] <= benchmark.PARITY_TOL
    # the non-official head switches have no official-style path
    seg.head.official_pairing = False
    with pytest.raises(ValueError, match="official head behaviour"):
        benchmark.official_style(seg)


@pytest.mark.slow
def test_cass_benchmark_reports_parity_and_the_vfm_cost(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--clip-model", str(TINY_CONFIG), "--pretrained", "none", "--heads", "cass",
                 "--tiny-vfm", "--size", "120x90", "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    (row,) = info["rows"]
    assert row["head"] == "cass" and row["windows"] == 6 and row["parity_ok"] and row["parity_required"]
    assert row["parity"]["discontinuity"] == "windows with another head pairing"
    assert row["protocol"]["features"]["dino"]["model_kwargs"] == dict(benchmark.TINY_VFM, embed_dim=64)
    vfm = row["vfm"]
    assert vfm["provider"] == "dino" and vfm["tokens_per_window"] == 28 * 28
    assert vfm["official_calls_per_window"] == [[28, 28], [42, 42]]
    assert vfm["official_gflop_per_image"] > vfm["gflop_per_image"] > 0 and vfm["official_ms_per_image"] > 0
    assert "| cass | float32 | 6 |" in (out / "benchmark.md").read_text()


def _counted_flops(provider, raw):
    """torch's FLOP count of ``provider(raw)``, SDPA counted with torch's formula (as for CLIP)."""
    from torch.utils.flop_counter import sdpa_flop_count

    def sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        provider(raw)
    return counter.get_total_flops()


def test_proxyclip_vfm_flops_match_torch_flop_counter():
    """The analytic VFM count equals torch's FLOP counter on the provider's forward."""
    providers = benchmark.build_providers(benchmark.provider_specs("proxyclip", None, tiny=True), torch.device("cpu"))
    vfm = providers["vfm"]
    flops = _counted_flops(vfm, torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8))
    assert vfm.output_grid((48, 40)) == (6, 5)
    assert roofline.vit_flops(vfm.model, (6, 5), 2) == flops


def test_key_provider_flops_stop_at_the_last_qkv():
    """CASS's provider (``output="k"``) runs the blocks before the last and the last block's qkv:
    ``vit_flops(last="qkv")`` equals torch's FLOP counter on it."""
    specs = benchmark.provider_specs("cass", None, tiny=True, clip_width=64)
    vfm = benchmark.build_providers(specs, torch.device("cpu"))["dino"]
    flops = _counted_flops(vfm, torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8))
    assert roofline.vit_flops(vfm.model, (6, 6), 2, last="qkv") == flops
    assert roofline.vit_flops(vfm.model, (6, 6), 2, last="qkv") < roofline.vit_flops(vfm.model, (6, 6), 2)


def test_proxyclip_benchmark_refuses_padded_windows():
    """Where the protocol pads windows the official VFM sees CLIP's mean colour and the provider
    black: no comparison, said before any timing."""
    with pytest.raises(ValueError, match="padded windows"):
        benchmark.main(["--clip-model", str(TINY_CONFIG), "--heads", "proxyclip", "--tiny-vfm", "--size", "3000x200",
                        "--repeats", "1", "--device", "cpu"])


@pytest.mark.slow
def test_proxyclip_benchmark_reports_parity_and_the_vfm_cost(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--clip-model", str(TINY_CONFIG), "--pretrained", "none", "--heads", "proxyclip",
                 "--tiny-vfm", "--size", "120x90", "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    (row,) = info["rows"]
    assert row["head"] == "proxyclip" and row["dtype"] == "float32" and row["windows"] == 2
    assert row["parity_ok"] and row["parity_required"] and row["parity"]["ok"]
    assert row["parity"]["logit_diff_same_vfm"] <= benchmark.PARITY_TOL
    assert row["parity"]["vfm_rel_diff"] <= benchmark.PARITY_TOL
    assert row["parity"]["threshold_flips"] == 0 and row["parity"]["threshold_entries"] == 2 * 1764 ** 2
    assert row["max_logit_diff"] <= benchmark.PARITY_TOL and row["labels_identical"]
    assert row["ms_per_image"] > 0 and row["baseline_image_ms"] > 0 and row["speedup_image"] > 0
    assert row["stages_ms"]["providers"] > 0
    assert row["protocol"]["features"]["vfm"]["weights"] is None
    assert row["protocol"]["features"]["vfm"]["model_kwargs"] == benchmark.TINY_VFM
    vfm = row["vfm"]
    assert vfm["provider"] == "vfm" and vfm["model"] == "vit_base_patch8_224.dino" and vfm["weights"] == "random"
    assert vfm["windows"] == 2 and vfm["window_size"] == [336, 336] and vfm["tokens_per_window"] == 42 * 42
    assert vfm["gflop_per_image"] > 0 and vfm["ms_per_image"] > 0 and vfm["official_ms_per_image"] > 0
    assert vfm["gflops_per_s"] > 0 and 0 < vfm["share_of_ms_per_image"] and 0 < vfm["share_of_baseline"]
    assert vfm["official_hooks_registered"] >= 2
    table = (out / "benchmark.md").read_text()
    assert "| proxyclip | float32 | 2 |" in table and "The VFM's own cost" in table and "| ok |" in table


def test_protocols_are_the_shipped_base_configs():
    from ovdense.config import find_config, load_config

    for head in benchmark.HEADS:
        cfg = load_config(find_config(f"_base_/{head}"))
        proto = benchmark.protocol(head)
        for section in ("preprocess", "windows", "decode", "refiners", "text_encoder"):
            expected = cfg[section]
            expected = expected.to_dict() if hasattr(expected, "to_dict") else [dict(r) for r in expected]
            assert proto[section] == expected, (head, section)
        assert proto["head"] == cfg.head.to_dict() and proto["pos_interp"] == cfg.backbone.pos_interp
        assert "backbone" not in proto and "device" not in proto and "dtype" not in proto
        assert proto is not benchmark.protocol(head)  # a new dict every time
    assert benchmark.protocol("maskclip")["pos_interp"] == "size"
    assert benchmark.protocol("clearclip")["windows"] == dict(crop=448, stride=224, pad_to=16)
    assert benchmark.available_heads()[:5] == list(benchmark.HEADS)
    voc21 = benchmark.voc21_classes()
    assert len(voc21) == 21 and voc21[0][:2] == ["sky", "wall"] and sum(map(len, voc21)) == 56


def test_protocols_follow_an_edited_config(tmp_path, monkeypatch):
    """No private copy: a change to the config file is what the benchmark runs."""
    import shutil

    import ovdense.config

    root = tmp_path / "configs"
    shutil.copytree(ovdense.config.configs_dir(), root)
    base = root / "_base_" / "sclip.py"
    base.write_text(base.read_text().replace("short_side=336", "short_side=123"))
    monkeypatch.setattr(ovdense.config, "configs_dir", lambda: str(root))
    assert benchmark.protocol("sclip")["preprocess"] == dict(short_side=123)


def test_protocols_never_change_a_shared_backbone():
    """MaskCLIP's pos_interp='size' goes to a view of its own over the same weights; the shared
    backbone and the other protocols keep 'scale_factor'; same templates share one text cache."""
    torch.manual_seed(0)
    bb = ovdense.CLIPBackbone.load(str(TINY_CONFIG), None)
    text = {}
    segs = {h: benchmark.build_segmenter(h, bb, torch.device("cpu"), torch.float32, text) for h in benchmark.HEADS}
    assert bb.pos_interp == "scale_factor"
    assert segs["maskclip"].backbone.pos_interp == "size"
    for seg in segs.values():
        assert seg.backbone is not bb and seg.backbone.model is bb.model  # own settings, shared weights
    for head in ("vanilla", "sclip", "clearclip", "naclip"):
        assert segs[head].backbone.pos_interp == "scale_factor", head
    x = torch.randn(1, 3, 48, 80)
    segs["maskclip"].dense_features(x)
    assert not bb._pe_cache  # the view filled its own cache
    again = benchmark.build_segmenter("sclip", bb, torch.device("cpu"), torch.float32, text)
    torch.testing.assert_close(again.dense_features(x), segs["sclip"].dense_features(x))
    assert segs["sclip"].text is segs["naclip"].text is segs["vanilla"].text
    assert len(segs["maskclip"].text.templates) == 85 and len(segs["sclip"].text.templates) == 80
    assert segs["naclip"].head.gaussian_std == 5.0 and segs["clearclip"].decoder.logit_scale == 50.0


@pytest.mark.parametrize("argv", [["--batch-sizes", "0"], ["--size", "500"], ["--size", "0x10"], ["--repeats", "0"]])
def test_benchmark_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark"] + argv)
    assert exc.value.code == 2 and argv[0] in capsys.readouterr().err


@pytest.mark.parametrize("size, batch", [((64, 48), 2), ((32, 32), 1)])
def test_backbone_flops_match_torch_flop_counter(size, batch):
    """The analytic count equals torch's FLOP counter on the (fused) prefix. The counter has
    no formula for the CPU flash-attention kernel, so the test gives it torch's own SDPA one."""
    from torch.utils.flop_counter import sdpa_flop_count

    bb = ovdense.CLIPBackbone.load(str(TINY_CONFIG), None)
    x = torch.randn(batch, 3, *size)
    def sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        bb.prefix(x)
    assert roofline.backbone_flops(bb, size, batch) == counter.get_total_flops()


def test_matmul_peak_and_device_facts():
    cpu = torch.device("cpu")
    assert roofline.matmul_peak_gflops(cpu, torch.float32, 64, 32, 128, repeats=2) > 0
    assert roofline.nominal_bf16_tflops(cpu) is None
    assert roofline.peak_memory_mb(cpu) > 0
    assert isinstance(roofline.device_name(cpu), str) and roofline.device_name(cpu)


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H100 NVL", 835.0), ("NVIDIA H200", 989.4),
                                          ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA GeForce RTX 3090", None)])
def test_datasheet_peaks_match_device_names(monkeypatch, name, tflops):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert roofline.nominal_bf16_tflops(torch.device("cuda")) == tflops


def test_latency_mode_reports_per_frame_and_per_stage_times(tmp_path):
    """``benchmark --latency``: the shipped latency config on the tiny model, frame by frame;
    fields present and numbers positive (no timing assertions)."""
    out = tmp_path / "latency"
    assert main(["benchmark", "--latency", "--config", "latency_640x480", "--clip-model", str(TINY_CONFIG),
                 "--frames", "3", "--warmup", "1", "--size", "160x120", "--device", "cpu", "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    assert info["mode"] == "latency" and info["config"] == "configs/latency/latency_640x480.py"
    assert info["device"] == "cpu" and info["threads"] == torch.get_num_threads() and info["device_name"]
    assert info["frame"] == [120, 160] and info["frames"] == 3 and len(info["per_frame_ms"]) == 3
    # the config: one whole-image pass at short side 224, SCLIP, output at the model's canvas
    assert info["windows"] == 1 and info["short_side"] == 224 and info["head"] == "SCLIPHead"
    assert info["resolution"] == "model" and info["output"] == info["model_input"] and min(info["model_input"]) == 224
    assert info["classes"] == 21 and info["queries"] == 56 and "random" in info["vocabulary"]
    for stats in [info["ms_per_frame"]] + [info["stages_ms"][s] for s in ("load", "features", "logits", "decode")]:
        assert set(stats) >= {"p50", "p90", "max"}
        assert 0 < stats["p50"] <= stats["p90"] <= stats["max"]
    assert set(info["stages_ms"]) == {"load", "features", "logits", "refine", "decode"}
    assert info["stages_ms"]["refine"]["p50"] >= 0  # no refiners: only the empty loop
    assert info["frames_per_s"] > 0 and all(ms > 0 for ms in info["warmup_ms"])
    table = (out / "benchmark.md").read_text()
    assert "| **frame (predict call)** |" in table and "| features |" in table and "frames/s" in table


def test_latency_mode_input_resolution_and_a_config_file(tmp_path):
    """--resolution input gives the frame's size; --config takes a file (here a variant with
    short side 336 inheriting the shipped config)."""
    from ovdense.config import find_config

    variant = tmp_path / "variant.py"
    base = find_config("latency_640x480")
    names = str(Path(base).parents[1] / "names" / "cls_voc21.txt")  # name files are relative to the leaf
    variant.write_text(f"_base_ = [{base!r}]\npreprocess = dict(short_side=336)\n"
                       f"classes = dict(names={names!r}, background='first')\n")
    out = tmp_path / "latency"
    assert main(["benchmark", "--latency", "--config", str(variant), "--clip-model", str(TINY_CONFIG),
                 "--frames", "1", "--warmup", "0", "--size", "160x120", "--resolution", "input", "--device", "cpu",
                 "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    assert info["short_side"] == 336 and min(info["model_input"]) == 336 and info["output"] == [120, 160]
    assert info["ms_per_frame"]["p50"] > 0 and info["warmup_ms"] == []


def test_latency_mode_times_the_fixed_size_step_on_the_same_frames(tmp_path):
    """--fixed-size: FixedSizePredictor on the same frames, its label maps checked equal to
    predict's, the ratio reported."""
    out = tmp_path / "latency"
    assert main(["benchmark", "--latency", "--config", "latency_640x480", "--clip-model", str(TINY_CONFIG),
                 "--frames", "2", "--warmup", "1", "--size", "160x120", "--device", "cpu", "--fixed-size",
                 "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    fixed = info["fixed_size"]
    assert fixed["labels_equal"] is True and fixed["cuda_graph"] is False and len(fixed["per_frame_ms"]) == 2
    assert 0 < fixed["ms_per_frame"]["p50"] and fixed["speedup_p50"] > 0
    assert "FixedSizePredictor on the same frames" in (out / "benchmark.md").read_text()


@pytest.mark.parametrize("argv", [["--config", "latency_640x480"], ["--latency", "--frames", "0"],
                                  ["--fixed-size"], ["--latency", "--cuda-graph"],
                                  ["--latency", "--fixed-size", "--cuda-graph", "--device", "cpu"]])
def test_latency_options_are_checked(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark"] + argv)
    assert exc.value.code == 2


@pytest.mark.slow  # two full runs of each method on 8 windows
@pytest.mark.parametrize("method", ["corrclip", "ovstitcher"])
def test_official_style_modes_from_the_cli(method, tmp_path):
    """``benchmark --corrclip`` / ``--ovstitcher``: exit 0 when the outputs agree, and the report names the
    ratio; ``<method>.json`` holds the timings."""
    out = tmp_path / method
    assert main(["benchmark", f"--{method}", "--clip-model", str(TINY_CONFIG), "--tiny-vfm", "--size", "80x60",
                 "--out", str(out)]) == 0
    info = json.loads((out / f"{method}.json").read_text())
    assert info["labels_equal"] == 1.0 and info["max_logit_diff"] < 1e-5 and info["speedup"] > 0
    assert "speedup" in (out / f"{method}.md").read_text()
