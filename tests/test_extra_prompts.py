"""Extra prompt sentences per query (OV-Stitcher's class-biased templates, ``extra_prompts``)."""
from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F

import ovdense
from ovdense.text import TextEmbedder, load_extra_prompts

TEMPLATES = ("a photo of a {}.", "a drawing of the {}.")
# 'red car' has a sentence with braces: sentences are used as they are, never formatted. Neither
# query has as many sentences as templates, so averaging the sentences apart gives other numbers
EXTRAS = {
    "cat": ["a small furry pet with whiskers"],
    "red car": ["a vehicle painted bright red", "a car {} with four wheels", "a shiny sports car"],
    "zebra": ["a striped horse"],  # not among the queries
}
QUERIES = ["cat", "red car", "dog"]  # 'dog' has no sentences: templates only


def official(backbone, prompts):
    """OV-Stitcher's ``generate_category_embeddings`` for one query word, written out."""
    feature = backbone.encode_text(prompts).float()
    feature = feature / feature.norm(dim=-1, keepdim=True)
    feature = feature.mean(dim=0)
    return feature / feature.norm()


def prompts_of(query, templates=TEMPLATES, extras=EXTRAS):
    return [t.format(query) for t in templates] + list(extras.get(query, []))


@pytest.mark.parametrize("batch_size", [256, 3])  # 3: prompts of one query split over batches
def test_equals_the_official_computation(tiny_backbone, batch_size):
    emb = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", batch_size=batch_size, extra_prompts=EXTRAS)(QUERIES)
    assert emb.shape == (3, tiny_backbone.embed_dim)
    for i, q in enumerate(QUERIES):
        torch.testing.assert_close(emb[i], official(tiny_backbone, prompts_of(q)), atol=1e-6, rtol=1e-5)
    # the check has teeth: the wrong recipes give other numbers
    plain = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="")(["cat", "red car"])
    for i, q in enumerate(["cat", "red car"]):
        templated = F.normalize(tiny_backbone.encode_text(prompts_of(q, extras={})).float(), dim=-1)
        sentences = F.normalize(tiny_backbone.encode_text(EXTRAS[q]).float(), dim=-1)
        separately = F.normalize(templated.mean(0) + sentences.mean(0), dim=0)  # extras averaged on their own
        formatted = official(tiny_backbone, prompts_of(q, extras={q: [s.format(q) for s in EXTRAS[q]]}))
        for wrong in (plain[i], separately) + ((formatted,) if "{}" in "".join(EXTRAS[q]) else ()):
            assert (emb[i] - wrong).abs().max() > 1e-4


def test_openai80_plus_extras_equals_the_official_80_templates(tiny_backbone):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # = OV-Stitcher's openai_imagenet_template

    extras = {"aeroplane": ["a large metal aircraft with wings", "a flying machine with two wings",
                            "a plane with a long fuselage"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every prompt fits the tiny model's 16-token context
        emb = TextEmbedder(tiny_backbone, "openai80", cache_dir="", extra_prompts=extras)(["aeroplane"])
    prompts = [temp("aeroplane") for temp in OPENAI_IMAGENET_TEMPLATES] + extras["aeroplane"]
    assert len(prompts) == 83
    torch.testing.assert_close(emb[0], official(tiny_backbone, prompts), atol=1e-6, rtol=1e-5)


def test_no_sentences_changes_nothing(tiny_backbone):
    plain = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="")
    other = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts={"zebra": ["a striped horse"]})
    # none of these queries has sentences: the plain code path, bit for bit
    assert torch.equal(other(["cat", "dog"]), plain(["cat", "dog"]))
    # a query missing from the mapping, encoded beside queries that have sentences: templates only
    mixed = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=EXTRAS)(QUERIES)
    torch.testing.assert_close(mixed[2], plain(["dog"])[0], atol=1e-6, rtol=1e-5)
    # empty lists are no sentences (OV-Stitcher: templates only), and no mapping is no mapping
    fresh = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="")
    empty = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts={"cat": []})
    none = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=None)
    assert empty.key == none.key == fresh.key
    assert torch.equal(empty(["cat"]), fresh(["cat"])) and torch.equal(none(["cat"]), fresh(["cat"]))


def test_cache_key_holds_the_sentences(tiny_backbone, tmp_path):
    def key(extras):
        return TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=extras).key

    plain = key(None)
    with_extras = key(EXTRAS)
    assert with_extras != plain
    assert key({"cat": ["an animal that purrs"]}) not in (plain, with_extras)
    assert key({**EXTRAS, "cat": ["a small furry pet"]}) != with_extras  # one sentence changed
    assert key({"cat": ["a", "b"]}) != key({"cat": ["b", "a"]})  # sentence order is content
    assert key(dict(reversed(list(EXTRAS.items())))) == with_extras  # key order is not
    assert key({"cat": ["a"], "dog": ["b"]}) != key({"cat": ["a", "b"]})
    # a JSON file and the same mapping: one key, the same embeddings
    path = tmp_path / "class_biased_template.json"
    path.write_text(json.dumps(EXTRAS, indent=2))
    from_file = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=str(path))
    from_pathlib = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=path)
    assert from_file.key == from_pathlib.key == with_extras
    assert torch.equal(from_file(QUERIES), TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="",
                                                        extra_prompts=EXTRAS)(QUERIES))


def test_disk_cache_never_mixes_with_and_without_sentences(tiny_backbone, tmp_path):
    plain = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir=str(tmp_path))
    a = plain(["cat"])
    extra = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir=str(tmp_path), extra_prompts=EXTRAS)
    b = extra(["cat"])
    assert extra.encoded_queries == 1 and not torch.allclose(a, b, atol=1e-4)
    again = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir=str(tmp_path), extra_prompts=EXTRAS)
    assert again(["cat"]).equal(b) and again.encoded_queries == 0
    back = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir=str(tmp_path))
    assert back(["cat"]).equal(a) and back.encoded_queries == 0


def test_raw_average_is_the_raw_mean_over_all_prompts(tiny_backbone):
    emb = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", average="raw", extra_prompts=EXTRAS)(QUERIES)
    for i, q in enumerate(QUERIES):
        raw = tiny_backbone.encode_text(prompts_of(q)).float()
        torch.testing.assert_close(emb[i], raw.mean(0), atol=1e-6, rtol=1e-5)
        if q in EXTRAS:  # not the normalised recipe, not templates only
            assert (emb[i] - raw[:len(TEMPLATES)].mean(0)).abs().max() > 1e-4
            assert (F.normalize(emb[i], dim=0) - official(tiny_backbone, prompts_of(q))).abs().max() > 1e-5


def test_too_long_counts_the_sentences(tiny_backbone):
    long = "a very " + "very " * 20 + "long sentence"  # past the tiny model's 16 tokens
    text = TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts={"cat": [long], "dog": ["a dog"]})
    assert set(text.too_long(["cat", "dog"])) == {"cat"}
    with pytest.warns(UserWarning, match=r"1 class name\(s\) longer than .*extra_prompts sentence.*'cat'"):
        text(["cat", "dog"])


def test_queries_without_sentences_are_logged(tiny_backbone, caplog):
    with caplog.at_level(logging.INFO, logger="ovdense.text.embedding"):
        TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=EXTRAS)(QUERIES)
    assert "1 of 3 queries have no extra_prompts sentences" in caplog.text and "'dog'" in caplog.text


def test_bad_files_and_mappings_are_refused_on_construction(tiny_backbone, tmp_path):
    def make(spec):
        return TextEmbedder(tiny_backbone, TEMPLATES, cache_dir="", extra_prompts=spec)

    missing = tmp_path / "no_such_prompts.json"
    with pytest.raises(FileNotFoundError, match=r"no_such_prompts\.json.*extra_prompts"):
        make(str(missing))
    broken = tmp_path / "broken_prompts.json"
    broken.write_text('{"cat": ["a pet",]')
    with pytest.raises(ValueError, match=r"broken_prompts\.json' is not valid JSON") as err:
        make(broken)
    assert err.value.__cause__ is None and err.value.__suppress_context__ and "\n" not in str(err.value)
    for name, content, problem in [
        ("string_prompts.json", {"a": "not a list"}, r"'a' maps to a str, not a list"),
        ("number_prompts.json", {"a": ["fine", 3]}, r"'a' item 1 is a int, not a string"),
        ("list_prompts.json", [["a", "b"]], r"must be a JSON object .* not a list"),
    ]:
        path = tmp_path / name
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}.*{problem}"):
            make(path)
    with pytest.raises(ValueError, match=r"is a folder"):
        make(tmp_path)
    with pytest.raises(ValueError, match=r"extra_prompts: 'cat' maps to a str"):
        make({"cat": "a pet"})
    with pytest.raises(TypeError, match=r"extra_prompts must be a path .* got int"):
        make(3)
    assert load_extra_prompts(None) is None


def test_segmenter_text_encoder_section(tiny_backbone, tmp_path):
    extras = {"cat": ["a small furry pet"], "dog": ["a loyal pet", "a barking animal"]}
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu",
                              text_encoder=dict(templates=["a photo of a {}."], cache_dir="", extra_prompts=extras))
    vocab = seg.encode_vocabulary(["cat", "dog", "sky"])
    text = TextEmbedder(tiny_backbone, ["a photo of a {}."], cache_dir="", extra_prompts=extras)(["cat", "dog", "sky"])
    torch.testing.assert_close(vocab.text, text, atol=1e-6, rtol=1e-5)
    plain = TextEmbedder(tiny_backbone, ["a photo of a {}."], cache_dir="")(["cat", "dog"])
    assert (vocab.text[:2] - plain).abs().max() > 1e-4
    with pytest.raises(FileNotFoundError, match=r"nope\.json.*text_encoder"):
        ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu",
                            text_encoder=dict(cache_dir="", extra_prompts=str(tmp_path / "nope.json")))
