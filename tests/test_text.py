"""Vocabulary parsing, template averaging and the text-embedding cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import pytest

from ovdense.text import TextEmbedder, build_vocabulary, resolve_templates


def test_name_file_formats_and_background(tmp_path):
    comma = tmp_path / "a.txt"
    comma.write_text("sky, wall, tree\nperson, man, woman\ncat\n\n")
    semi = tmp_path / "b.txt"
    semi.write_text("sky; wall; tree\nperson; man, woman\ncat\n")
    v = build_vocabulary(str(comma), background="first")
    assert v.has_background and v.class_names == ("sky", "person", "cat")
    assert v.queries == ("sky", "wall", "tree", "person", "man", "woman", "cat")
    assert v.query_to_class == (0, 0, 0, 1, 1, 1, 2)
    w = build_vocabulary(str(semi))
    assert w.synonyms[1] == ("person", "man, woman") and not w.has_background
    x = build_vocabulary(["cat", "dog, puppy", ["car", "auto"]], background="sky, wall")
    assert x.class_names == ("sky", "cat", "dog", "car") and x.query_to_class == (0, 0, 1, 2, 2, 3, 3)
    # one plain string is one class line, like one list element (several classes need a list)
    assert build_vocabulary("cat, dog") == build_vocabulary(["cat, dog"]) == build_vocabulary([["cat", "dog"]])
    assert build_vocabulary("cat, dog").class_names == ("cat",)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        build_vocabulary(str(tmp_path / "nope.txt"))


def test_templates():
    t = resolve_templates("openai80")
    assert len(t) == 80 and t[0] == "a bad photo of a {}." and t[-1] == "a tattoo of the {}."
    assert resolve_templates(None) == ("{}",)
    with pytest.raises(ValueError):
        resolve_templates(["no placeholder"])


def test_embedding_is_mean_of_normalised_templates(tiny_backbone):
    templates = ("a photo of a {}.", "a drawing of the {}.", "{}")
    emb = TextEmbedder(tiny_backbone, templates)(["cat", "red car"])
    for i, name in enumerate(["cat", "red car"]):
        raw = tiny_backbone.encode_text([t.format(name) for t in templates]).float()
        ref = F.normalize(F.normalize(raw, dim=-1).mean(0), dim=0)
        torch.testing.assert_close(emb[i], ref, atol=1e-6, rtol=1e-5)


def test_cache_hits_in_memory_and_on_disk(tiny_backbone, tmp_path):
    templates = resolve_templates("openai80")
    first = TextEmbedder(tiny_backbone, templates, cache_dir=str(tmp_path))
    a = first(["cat", "dog"])
    assert first.encoded_queries == 2
    b = first(["dog", "cat", "bird"])
    assert first.encoded_queries == 3  # only 'bird' was new
    assert torch.equal(b[0], a[1]) and torch.equal(b[1], a[0])
    second = TextEmbedder(tiny_backbone, templates, cache_dir=str(tmp_path))
    c = second(["cat", "dog", "bird"])
    assert second.encoded_queries == 0
    assert torch.equal(c[:2], a) and torch.equal(c[2], b[2])
    # another template set is another cache entry
    third = TextEmbedder(tiny_backbone, ("{}",), cache_dir=str(tmp_path))
    third(["cat"])
    assert third.encoded_queries == 1


def test_corrupt_disk_cache_is_rebuilt(tiny_backbone, tmp_path):
    emb = TextEmbedder(tiny_backbone, ("{}",), cache_dir=str(tmp_path))
    emb(["cat"])
    path = tmp_path / "text" / f"{emb.key}.pt"
    path.write_bytes(b"garbage")
    again = TextEmbedder(tiny_backbone, ("{}",), cache_dir=str(tmp_path))
    again(["cat"])
    assert again.encoded_queries == 1


def test_truncated_text_forward_equals_open_clip_encode_text(tiny_backbone):
    """Cutting the padded tail after the last end-of-text token leaves the embeddings unchanged."""
    texts = ["a photo of a cat.", "a bad photo of the big red double-decker bus.", "x"]
    tokens = tiny_backbone.tokenizer()(texts)
    ref = tiny_backbone.model.encode_text(tokens)
    torch.testing.assert_close(tiny_backbone.encode_text(texts), ref, atol=1e-5, rtol=1e-5)


def test_unwritable_cache_warns_and_keeps_embeddings_in_memory(tiny_backbone, tmp_path, caplog):
    """A cache folder that cannot be created costs a warning, never the run."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    emb = TextEmbedder(tiny_backbone, ("{}",), cache_dir=str(blocker / "cache"))
    with caplog.at_level("WARNING"):
        first = emb(["cat", "dog"])
    assert "stay in memory" in caplog.text and emb.cache_dir is None
    assert emb(["cat"]).shape == (1, first.shape[1]) and emb.encoded_queries == 2
