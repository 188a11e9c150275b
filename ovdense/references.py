"""Reference-image mode: class prototypes from a few labelled images, fused with the text.

A user with a few labelled images of their own classes gains most from them (one annotated
image per class adds double-digit mIoU in recent few-shot work). ``seg.add_references(images,
label_maps, class_names)`` runs the segmenter's own dense features over the images and averages
them per class: a *prototype* per class, a unit vector in the same space as the text
embeddings (the head's features are CLIP's projected, L2-normalised patch features, which the
text is compared with). At prediction every query of a class with a prototype becomes

    t' = (1 - w) * t + w * p            (w = ``weight``, 0.5 by default)

so its logit at a pixel is ``(1 - w) cos(f, t) + w cos(f, p)``: the text score and the visual
similarity to the references, mixed per class before the decoder's softmax. Classes without a
prototype keep their text. Because the mixture lives in the query embeddings, it works with every
head, refiner, decoder rule, region scorer and the detector unchanged.

Pooling: for each image, its label map (class indices into ``class_names``; ``ignore_index``
and negative values are skipped) is resized by nearest neighbour to the canvas the model sees,
cut into the same windows (padding ignored), resized to each window's feature grid, and every
feature cell adds its (normalised) feature to its class; a prototype is the normalised mean.
Prototypes are tied to the weights and the head that made them (:attr:`ReferencePrototypes.source`):
loading them into another segmenter is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .structures import EncodedVocabulary

#: File format version of :meth:`ReferencePrototypes.save`.
FORMAT = 1


@dataclass(frozen=True)
class ReferencePrototypes:
    """Per-class prototypes (an immutable value: share it, save it, load it).

    Attributes:
        class_names: the classes with a prototype.
        prototypes: ``[K, D]`` float32 unit vectors, one per class.
        counts: ``[K]`` feature cells averaged into each prototype.
        images: how many reference images contributed.
        source: what made them: the CLIP weights' fingerprint and the head (checked when loaded).
    """

    class_names: Tuple[str, ...]
    prototypes: torch.Tensor
    counts: np.ndarray
    images: int = 0
    source: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prototypes.ndim != 2 or self.prototypes.shape[0] != len(self.class_names):
            raise ValueError(f"prototypes must be [{len(self.class_names)}, D], got {tuple(self.prototypes.shape)}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("reference class names must be unique")

    def __len__(self) -> int:
        return len(self.class_names)

    def prototype(self, name: str) -> Optional[torch.Tensor]:
        """The prototype of class ``name`` (None if it has none)."""
        return self.prototypes[self.class_names.index(name)] if name in self.class_names else None

    def fuse(self, encoded: EncodedVocabulary, weight: float = 0.5) -> EncodedVocabulary:
        """``encoded`` with every query of a class that has a prototype mixed with it:
        ``(1 - weight) * text + weight * prototype`` (classes matched by name)."""
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"reference weight must lie in [0, 1], got {weight}")
        if encoded.text.shape[1] != self.prototypes.shape[1]:
            raise ValueError(f"reference prototypes are {self.prototypes.shape[1]}-d, the text "
                             f"{encoded.text.shape[1]}-d: they were made with another model")
        index = {name: k for k, name in enumerate(self.class_names)}
        per_class = torch.tensor([index.get(name, -1) for name in encoded.vocabulary.class_names])
        rows = per_class[encoded.query_to_class.cpu()].to(encoded.text.device)  # prototype of every query
        hit = rows >= 0
        if not bool(hit.any()):
            return encoded
        text = encoded.text.clone()
        protos = self.prototypes.to(text.device, text.dtype)
        text[hit] = (1.0 - weight) * text[hit] + weight * protos[rows[hit]]
        return EncodedVocabulary(encoded.vocabulary, text)

    def merged(self, other: "ReferencePrototypes") -> "ReferencePrototypes":
        """Both sets of references pooled (prototypes weighted by their cell counts)."""
        if self.source and other.source and self.source != other.source:
            raise ValueError("references made with different weights or heads cannot be merged")
        names = list(self.class_names) + [n for n in other.class_names if n not in self.class_names]
        d = self.prototypes.shape[1]
        sums = torch.zeros(len(names), d)
        counts = np.zeros(len(names), dtype=np.int64)
        for refs in (self, other):
            for k, name in enumerate(refs.class_names):
                i = names.index(name)
                sums[i] += refs.prototypes[k].float().cpu() * float(refs.counts[k])
                counts[i] += int(refs.counts[k])
        return ReferencePrototypes(tuple(names), F.normalize(sums, dim=1), counts, self.images + other.images,
                                   dict(self.source or other.source))

    def save(self, path: str) -> None:
        """Write to a ``.npz`` file (names, prototypes, counts, image count, source)."""
        import json

        np.savez(path, format=np.array(FORMAT), class_names=np.array(json.dumps(list(self.class_names))),
                 prototypes=self.prototypes.detach().cpu().float().numpy(), counts=np.asarray(self.counts),
                 images=np.array(self.images), source=np.array(json.dumps(self.source)))

    @classmethod
    def load(cls, path: str) -> "ReferencePrototypes":
        """Read a file written by :meth:`save` (one-line errors naming the file)."""
        import json
        import os

        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such reference file")
        try:
            with np.load(path) as data:
                version = int(data["format"])
                if version != FORMAT:
                    raise ValueError(f"{path}: reference file format {version}, this ovdense reads {FORMAT}")
                return cls(tuple(json.loads(str(data["class_names"]))), torch.from_numpy(data["prototypes"]),
                           data["counts"].astype(np.int64), int(data["images"]), json.loads(str(data["source"])))
        except (KeyError, OSError, ValueError) as err:
            if str(err).startswith(path):
                raise
            raise ValueError(f"{path}: not an ovdense reference file ({err})") from None


def class_name(entry: Union[str, Sequence[str]]) -> str:
    """A class's name as vocabularies name it: the first of its synonyms (``"grass, lawn"`` or
    ``["grass", "lawn"]`` -> ``"grass"``), so reference classes match name-file lines."""
    from .text.vocabulary import split_synonyms

    if isinstance(entry, str):
        return split_synonyms(entry)[0]
    return str(entry[0])


def _window_labels(labels: torch.Tensor, context: Any, grid: Tuple[int, int], ignore: int) -> torch.Tensor:
    """The canvas label map ``[H', W']`` cut into the context's windows and resized (nearest)
    to the feature grid: ``[n_windows, h, w]`` (padding and unlabelled cells = ``ignore``)."""
    if context.whole:
        cut = labels[None, None].float()
    else:
        boxes, pad = context.boxes, context.pad
        cut = torch.stack([labels[y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])[:, None].float()
        if any(pad):
            cut = F.pad(cut, pad, value=float(ignore))
    return F.interpolate(cut, size=grid, mode="nearest")[:, 0].long()


def pool_prototypes(contexts: Sequence[Any], label_maps: Sequence[np.ndarray], class_names: Sequence[str],
                    ignore_index: int = 255, source: Optional[Dict[str, str]] = None) -> ReferencePrototypes:
    """Prototypes from image contexts (``seg.encode_image``) and their label maps ``(H, W)`` at
    the input size, class indices into ``class_names`` (``ignore_index`` / negatives skipped)."""
    if len(contexts) != len(label_maps):
        raise ValueError(f"{len(contexts)} images but {len(label_maps)} label maps")
    class_names = [class_name(n) for n in class_names]
    k = len(class_names)
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros(k, dtype=torch.long)
    for i, (ctx, labels) in enumerate(zip(contexts, label_maps)):
        labels = np.asarray(labels)
        if labels.ndim != 2 or tuple(labels.shape) != tuple(ctx.original_size):
            raise ValueError(f"reference {i}: label map of shape {labels.shape}, expected the image's "
                             f"{tuple(ctx.original_size)}")
        lab = torch.from_numpy(labels.astype(np.int64))
        lab = torch.where((lab < 0) | (lab >= k), torch.full_like(lab, -1), lab)
        canvas = F.interpolate(lab[None, None].float(), size=tuple(ctx.resized_size), mode="nearest")[0, 0].long()
        feats = ctx.features.float().cpu()                                  # [n, D, h, w], unit norm
        cells = _window_labels(canvas, ctx, tuple(feats.shape[-2:]), -1)    # [n, h, w]
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        cls = cells.reshape(-1)
        keep = cls >= 0
        if sums is None:
            sums = torch.zeros(k, feats.shape[1])
        sums.index_add_(0, cls[keep], flat[keep])
        counts += torch.bincount(cls[keep], minlength=k)
    if sums is None:
        raise ValueError("no reference images given")
    present = torch.nonzero(counts > 0).flatten()
    if present.numel() == 0:
        raise ValueError("the reference label maps label no pixel with a class of class_names")
    names = tuple(class_names[i] for i in present.tolist())
    protos = F.normalize(sums[present], dim=1)
    return ReferencePrototypes(names, protos, counts[present].numpy(), len(contexts), dict(source or {}))


def reference_source(seg: Any) -> Dict[str, str]:
    """What prototypes of ``seg`` depend on: its CLIP weights and its head."""
    return {"weights": seg.backbone.weights_fingerprint(), "head": repr(seg.head)}


ReferencesInput = Union[ReferencePrototypes, str, None]


def check_source(refs: ReferencePrototypes, seg: Any, name: str = "references") -> None:
    """Refuse prototypes made with other weights or another head than ``seg``'s."""
    mine = reference_source(seg)
    theirs = refs.source or {}
    diff: List[str] = [key for key in ("weights", "head") if key in theirs and theirs[key] != mine[key]]
    if diff:
        raise ValueError(f"{name} were made with another {' and '.join(diff)} than this segmenter's "
                         f"({', '.join(f'{k}: {theirs[k]!r}' for k in diff)}); rebuild them with add_references")
