"""The open-vocabulary segmenter: a facade that builds the stages and runs them in order.

    image (uint8) -> Preprocessor -> SlidingWindows -> CLIP prefix -> head (+ auxiliary
    features of the uint8 windows) -> ImageContext -> logits vs the text of an
    EncodedVocabulary -> refiners -> Decoder (+ rules) -> SegmentationResult

Each stage is its own object built from one config section (``preprocess``, ``windows``,
``backbone``, ``head``, ``features``, ``refiners``, ``decode``, ``text_encoder``). Everything
known about an image after the head is its :class:`~ovdense.structures.ImageContext`; it does
not depend on the vocabulary, so one encoding serves any number of vocabularies, and every
later stage (refiners, decoder rules, proposal sources, region scorers) reads what it needs
from it.

Full-resolution output is produced in horizontal bands (``max_chunk_mb``): logits are
resized from the model's resolution band by band, refined with the rows of context each
refiner declares (``Refiner.halo_rows``), decoded, and written into the label map. Peak
memory is bounded by the setting, not by the image's size, and the labels equal those of
a single band.

Threads: a segmenter may be shared by threads. Its default vocabulary (``set_classes``)
is shared state, replaced atomically; a thread that needs its own classes encodes them
once (``encode_vocabulary``) and passes them per call (``predict(..., vocabulary=enc)``).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones.clip import CLIPBackbone
from .decode import Decoder
from .fixed_size import FixedSizePredictor
from .heads import Head, build_head
from .io.images import ImageInput, LoadedImage, image_path, load_image
from .io.sources import iter_images
from .ops.bilinear import resize_rows
from .ops.windows import SlidingWindows, crop_windows
from .preprocess import Preprocessor
from .references import ReferencePrototypes, check_source, pool_prototypes, reference_source
from .registry import CLASS_SELECTORS, FEATURES, REFINERS, build, names
from .runtime import resolve_device, resolve_dtype, synchronize
from .structures import DenseFeatures, EncodedVocabulary, ImageContext, SegmentationResult
from .text import TextEmbedder, Vocabulary, build_vocabulary

#: What ``backbone=None`` loads.
DEFAULT_BACKBONE = dict(clip_model="ViT-B-16", pretrained="openai")
RESOLUTIONS = ("input", "model")
REFINE_AT = ("input", "model")
#: Called after each band of output rows: ``progress(rows_done, rows_total)``.
ProgressCallback = Callable[[int, int], None]

VocabularyInput = Union[str, os.PathLike, Sequence[Union[str, Sequence[str]]], Vocabulary]


def _check_resolution(resolution: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")


def _section(spec: Any, cls: type, name: str) -> Any:
    """A stage object from its config section: None (defaults), a dict of kwargs, or the object."""
    if spec is None:
        return cls()
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, Mapping):
        try:
            return cls(**{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in spec.items()})
        except TypeError as err:
            raise TypeError(f"config section {name!r}: {err}") from None
    raise TypeError(f"config section {name!r} must be a dict or a {cls.__name__}, got {type(spec).__name__}")


class OVSegmenter:
    """Open-vocabulary semantic segmentation: CLIP dense features scored against text.

    Build once, set the classes once, predict many times::

        seg = OVSegmenter(backbone=dict(clip_model="ViT-B-16", pretrained="openai"), head="naclip",
                          preprocess=dict(short_side=336), windows=dict(crop=224, stride=112),
                          refiners=[dict(type="pamr", steps=10, dilations=(8, 16))],
                          decode=dict(logit_scale=40.0, renormalize=True))
        seg.set_classes("cls_voc21.txt", background="first")
        res = seg.predict("image.jpg")          # SegmentationResult(label_map, class_names, ...)

    Args (each section is the keyword arguments of one stage's constructor):
        backbone: a :class:`CLIPBackbone`, or :meth:`CLIPBackbone.load` kwargs
            (``clip_model``, ``pretrained``, ``weights_format``, ``pos_interp``); default
            OpenAI ViT-B/16. A given backbone is moved to ``device``/``dtype`` in place.
        head: head name (``ovdense.list_heads()``), ``dict(type=name, **kwargs)`` or a Head.
        preprocess: :class:`~ovdense.preprocess.Preprocessor` kwargs (``short_side``,
            ``image_scale``, ``mean``, ``std``; mean/std follow the weights by default).
        windows: :class:`~ovdense.ops.windows.SlidingWindows` kwargs (``crop``, ``stride``, ``pad_to``).
        features: auxiliary feature providers by name, ``{name: dict(type=..., ...)}``
            (``ovdense.registry.FEATURES``); heads, refiners, decoder rules, proposal
            sources and region scorers read those in their ``requires``.
        refiners: list of refiner specs run in order (``dict(type="pamr", steps=10)``).
        decode: :class:`~ovdense.decode.Decoder` kwargs (``logit_scale``,
            ``background_threshold``, ``area_threshold``, ``renormalize``, ``rules``).
        select_classes: per-image class selection, off by default (None): a
            ``dict(type=name, ...)`` of ``ovdense.registry.CLASS_SELECTORS`` (``presence``) or a
            built selector; once per image it keeps the classes the image plausibly contains
            (:mod:`ovdense.select`), the others get probability 0 before decoding.
        text_encoder: :class:`~ovdense.text.TextEmbedder` kwargs (``templates``, ``cache_dir``:
            default ``~/.cache/ovdense``, ``""`` keeps embeddings in memory only).
        batch_size: windows per forward pass (windows of several images share batches).
        max_chunk_mb: about how much memory the full-resolution output stage may use per
            band (logits and probabilities of every query over the band and its refiners'
            context rows, and the refiners' working memory); a band is never shorter than
            the refiners' context (PAMR: ``steps x max(dilations)`` rows).
        refine_at: ``"input"`` (default, the reference methods: refiners run on the logits
            resized to the output, band by band) or ``"model"``: refiners run once on the
            canvas (the resized image the model saw) and the refined logits are resized to
            the output; far cheaper for big photos (see README for the measured cost).
        compile: wrap the window forward in ``torch.compile`` (True or a backend name); on
            the 2-core development CPU inductor was about 20% slower than eager.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``...
        dtype: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA); logits,
            refiners and decoding always run in fp32.
    """

    def __init__(
        self,
        backbone: Union[CLIPBackbone, Mapping[str, Any], None] = None,
        head: Union[str, Mapping[str, Any], Head] = "sclip",
        *,
        preprocess: Union[Mapping[str, Any], Preprocessor, None] = None,
        windows: Union[Mapping[str, Any], SlidingWindows, None] = None,
        features: Optional[Mapping[str, Any]] = None,
        refiners: Sequence[Any] = (),
        decode: Union[Mapping[str, Any], Decoder, None] = None,
        select_classes: Optional[Any] = None,
        text_encoder: Optional[Mapping[str, Any]] = None,
        batch_size: int = 16,
        max_chunk_mb: float = 512,
        refine_at: str = "input",
        compile: Union[bool, str] = False,
        device: Union[str, torch.device, None] = "auto",
        dtype: Union[str, torch.dtype, None] = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if isinstance(backbone, CLIPBackbone):
            backbone = backbone.to(device=self.device, dtype=self.dtype)
        else:
            spec = dict(DEFAULT_BACKBONE if backbone is None else backbone)
            try:
                backbone = CLIPBackbone.load(**spec, device=self.device, dtype=self.dtype)
            except TypeError as err:
                raise TypeError(f"config section 'backbone': {err}") from None
        self.backbone: CLIPBackbone = backbone
        self.head: Head = build_head(head).to(self.device).eval()
        self.preprocessor: Preprocessor = _section(preprocess, Preprocessor, "preprocess").with_weights(backbone.model)
        self.windows: SlidingWindows = _section(windows, SlidingWindows, "windows")
        self.decoder: Decoder = _section(decode, Decoder, "decode")
        # per-image class selection (None = off): a CLASS_SELECTORS spec or a built selector
        self.class_selector = None if select_classes is None else build(CLASS_SELECTORS, select_classes)
        self.features = nn.ModuleDict({name: build(FEATURES, spec) for name, spec in (features or {}).items()})
        self.features.to(self.device).eval()
        self.refiners = nn.ModuleList([build(REFINERS, spec) for spec in refiners]).to(self.device).eval()
        self._check_requirements(self.head)
        self._check_requirements(*self.refiners, self.decoder, *self.features.values())
        if refine_at not in REFINE_AT:
            raise ValueError(f"refine_at must be one of {REFINE_AT}, got {refine_at!r}")
        self.refine_at = refine_at
        try:
            self.text = TextEmbedder(backbone, **dict(text_encoder or {}))
        except TypeError as err:
            raise TypeError(f"config section 'text_encoder': {err}") from None
        if batch_size < 1 or max_chunk_mb <= 0:
            raise ValueError("batch_size must be >= 1 and max_chunk_mb > 0")
        self.batch_size = int(batch_size)
        self.max_chunk_mb = float(max_chunk_mb)
        self._default: Optional[EncodedVocabulary] = None
        self.references: Optional[ReferencePrototypes] = None  # add_references / set_references
        self.reference_weight = 0.5
        self._default_key: Optional[Tuple[Any, Vocabulary]] = None  # (text encoder, vocabulary) it was encoded from
        self._lock = threading.Lock()
        self._forward = self._window_forward
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._forward = torch.compile(self._window_forward, backend=backend, dynamic=None)
        self.config: Optional[Dict[str, Any]] = None  # filled by from_config

    def _check_requirements(self, *stages: Any) -> None:
        """Every provider a stage ``requires`` is configured (heads: window-scope ones; other
        stages may also name the head's extras, which exist only once the head ran)."""
        for stage in stages:
            is_head = isinstance(stage, Head)
            wanted = (*getattr(stage, "requires", ()), *getattr(stage, "context_requires", ()))
            missing = [n for n in wanted if n not in self.features
                       and not (not is_head and n in getattr(self.head, "extras", ()))]
            if missing:
                raise ValueError(f"{type(stage).__name__} needs the feature provider(s) {missing}: "
                                 f"add features=dict({missing[0]}=dict(type=...)) (available types: "
                                 f"{', '.join(names(FEATURES)) or 'none'})")

    def _head_image_requires(self, *heads: Any) -> List[str]:
        """Image-scope providers the heads read: run once per image on the whole input, then
        cropped to the windows (:meth:`_image_map_windows`)."""
        wanted = {n for head in heads for n in getattr(head, "requires", ()) if n in self.features}
        return sorted(n for n in wanted if getattr(self.features[n], "scope", "window") != "window")

    def _image_map_windows(self, context: ImageContext, name: str) -> torch.Tensor:
        """Image-scope map ``name`` cut into the context's windows ``[n, C, h, w]``: resized to
        the canvas (the provider's ``canvas_interpolation``, ``"bilinear"`` by default; region
        maps say ``"nearest"``) and padded with its ``pad_value`` (0 by default) as the windows are."""
        provider = self.features[name]
        full = context.feature_map(name).float()
        mode = getattr(provider, "canvas_interpolation", "bilinear")
        if tuple(full.shape[-2:]) != tuple(context.resized_size):
            extra = {} if mode == "nearest" else {"align_corners": False}
            full = F.interpolate(full, size=tuple(context.resized_size), mode=mode, **extra)
        return crop_windows(full[0], context.boxes, context.pad, float(getattr(provider, "pad_value", 0.0)))

    def _window_requires(self, *stages: Any) -> List[str]:
        """Window-scope providers the stages need (run during encoding, once per window batch)."""
        wanted = {n for stage in stages for n in getattr(stage, "requires", ()) if n in self.features}
        return sorted(n for n in wanted if getattr(self.features[n], "scope", "window") == "window")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Union[str, os.PathLike, Mapping[str, Any]], classes: Optional[Any] = None,
                    background: Optional[Any] = None, **overrides: Any) -> "OVSegmenter":
        """Build from an mmengine config file (or dict) and set its classes; see :mod:`ovdense.config`.

        ``overrides`` replace whole sections or runtime options (``decode=dict(...)``,
        ``device='cpu'``); ``classes``/``background`` override the config's ``classes`` section.
        """
        from .config import load_config, resolve_names_path, segmenter_kwargs

        cfg = load_config(config)
        kwargs = segmenter_kwargs(cfg)
        kwargs.update(overrides)
        seg = cls(**kwargs)
        spec = cfg.get("classes") or {}
        names = classes if classes is not None else resolve_names_path(spec.get("names"), cfg)
        if classes is None:
            background = spec.get("background") if background is None else background
        if names is not None:
            seg.set_classes(names, background=background)
        seg.config = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        return seg

    # ------------------------------------------------------------------ vocabulary
    def encode_vocabulary(
        self,
        classes: Union[VocabularyInput, EncodedVocabulary],
        background: Optional[Union[str, Sequence[str]]] = None,
        embeddings: Optional[Union[torch.Tensor, np.ndarray]] = None,
    ) -> EncodedVocabulary:
        """Encode classes into an :class:`EncodedVocabulary` (a value: pass it to ``predict``).

        Args:
            classes: a name file (one class per line, synonyms separated by ``", "`` or
                ``"; "``), a list of names / synonym strings / synonym lists, or a Vocabulary.
            background: a background line to prepend as class 0, or ``"first"`` when the
                first line of ``classes`` already is the background.
            embeddings: optional precomputed ``[Q, D]`` text embeddings, one row per query
                (per class when there are no synonyms); skips the text encoder.
        """
        if isinstance(classes, EncodedVocabulary):
            return classes.to(self.device)
        vocab = classes if isinstance(classes, Vocabulary) else build_vocabulary(classes, background)
        if embeddings is not None:
            emb = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings)
            if emb.ndim != 2 or emb.shape[0] != vocab.num_queries:
                raise ValueError(f"embeddings must be [{vocab.num_queries}, D] (one row per query), "
                                 f"got {tuple(emb.shape)}")
            if emb.shape[1] != self.backbone.embed_dim:
                raise ValueError(f"embedding width {emb.shape[1]} does not match the model's {self.backbone.embed_dim}")
            text = F.normalize(emb.float(), dim=-1)
        else:
            text = self.text(vocab.queries)
        return EncodedVocabulary(vocab, text.to(self.device))

    def set_classes(
        self,
        classes: Union[VocabularyInput, EncodedVocabulary],
        background: Optional[Union[str, Sequence[str]]] = None,
        embeddings: Optional[Union[torch.Tensor, np.ndarray]] = None,
    ) -> Vocabulary:
        """Encode classes (see :meth:`encode_vocabulary`) and make them the default of every call.

        Setting the classes they already are (the same names, synonyms and background, no
        explicit ``embeddings``) costs nothing: the current embeddings are kept and the text
        encoder is not called (a robot can call this every cycle).
        """
        if embeddings is None and not isinstance(classes, EncodedVocabulary):
            vocab = classes if isinstance(classes, Vocabulary) else build_vocabulary(classes, background)
            with self._lock:
                current, key = self._default, self._default_key
            if current is not None and key is not None and key[0] is self.text and key[1] == vocab:
                return current.vocabulary
            encoded, key = self.encode_vocabulary(vocab), (self.text, vocab)
        else:
            encoded, key = self.encode_vocabulary(classes, background, embeddings), None
        with self._lock:
            self._default = encoded
            self._default_key = key  # (text encoder, vocabulary) when made by the text encoder
        return encoded.vocabulary

    @property
    def encoded_vocabulary(self) -> Optional[EncodedVocabulary]:
        """The default vocabulary with its embeddings (None until ``set_classes``)."""
        return self._default

    @property
    def vocabulary(self) -> Optional[Vocabulary]:
        return self._default.vocabulary if self._default is not None else None

    @property
    def class_names(self) -> List[str]:
        return list(self.vocabulary.class_names) if self.vocabulary else []

    def resolve_vocabulary(self, vocabulary: Optional[Union[EncodedVocabulary, VocabularyInput]] = None
                           ) -> EncodedVocabulary:
        """The vocabulary of a call: ``vocabulary`` encoded (an EncodedVocabulary as is), or
        the default one (``set_classes``) when None; with reference prototypes set
        (:meth:`add_references`), the queries of their classes are fused with them."""
        if vocabulary is None:
            encoded = self._default
            if encoded is None:
                raise RuntimeError("no classes set: call set_classes(...) or pass vocabulary=... to predict")
        else:
            encoded = self.encode_vocabulary(vocabulary)
        refs = self.references
        return encoded if refs is None else refs.fuse(encoded, self.reference_weight)

    # ------------------------------------------------------------------ reference images
    def add_references(self, images: Sequence[ImageInput], label_maps: Sequence[np.ndarray],
                       class_names: Sequence[str], ignore_index: int = 255, replace: bool = False,
                       weight: Optional[float] = None) -> ReferencePrototypes:
        """Class prototypes from a few labelled images (:mod:`ovdense.references`), added to the
        ones already set (``replace=True`` starts over) and used by every later call.

        Args:
            images: reference images (paths, arrays, PIL images).
            label_maps: per image an ``(H, W)`` int map of class indices into ``class_names``
                at the image's size (``ignore_index`` and negative values: unlabelled).
            class_names: the classes the indices name (matched by name with the vocabulary of
                each call: a class absent from it is simply not used).
            weight: the prototypes' share in the fused queries (default: keep the current, 0.5).
        Returns:
            the prototypes now set (save them with ``.save(path)``).
        """
        contexts = self.encode_images(list(images))
        refs = pool_prototypes(contexts, label_maps, list(class_names), ignore_index, reference_source(self))
        if self.references is not None and not replace:
            refs = self.references.merged(refs)
        self.set_references(refs, weight)
        return refs

    def set_references(self, references: Union[ReferencePrototypes, str, os.PathLike, None],
                       weight: Optional[float] = None) -> None:
        """Use these prototypes (a :class:`~ovdense.references.ReferencePrototypes` or a file
        written by its ``save``; None: text only); ``weight`` in [0, 1] (default: keep the current)."""
        if isinstance(references, (str, os.PathLike)):
            path = os.fspath(references)
            references = ReferencePrototypes.load(path)
            check_source(references, self, path)
        elif references is not None:
            check_source(references, self)
        if weight is not None:
            if not 0.0 <= float(weight) <= 1.0:
                raise ValueError(f"reference weight must lie in [0, 1], got {weight}")
            self.reference_weight = float(weight)
        self.references = references

    # ------------------------------------------------------------------ image side
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(H, W, 3)`` -> resized, normalised ``[3, H', W']`` float32 on the device."""
        return self.preprocessor(image, self.device)[1]

    def _pad_fill(self):
        """What the normalised windows are padded with: 0 (the mean colour) for ``pad_mode="centre"``,
        black (0 on the uint8 image, normalised: one value per channel) for ``"end"``."""
        if self.windows.pad_mode != "end":
            return 0.0
        return self.preprocessor.normalise(torch.zeros(3, 1, 1, dtype=torch.uint8, device=self.device)).flatten()

    def _window_forward(self, crops: torch.Tensor, aux: Mapping[str, torch.Tensor]) -> DenseFeatures:
        """CLIP prefix + head on normalised crops ``[B, 3, H, W]``."""
        view = None
        if self.head.reads_clip_image:  # a head reading providers alone skips CLIP's image tower (Talk2DINO)
            view = self.backbone.prefix(crops, taps=self.head.taps, keep_inputs=self.head.keeps_block_inputs)
        return self.head(view, self.backbone, aux)

    @torch.no_grad()
    def dense_features(self, crops: torch.Tensor, raw: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L2-normalised dense features ``[B, D, h, w]`` (float32) of normalised crops ``[B, 3, H, W]``.

        ``raw``: the same crops as uint8, for heads that need auxiliary features.
        """
        crops = crops.to(self.device)
        return self._forward(crops, self._aux(raw, self.head)).features

    def _aux(self, raw: Optional[torch.Tensor], *stages: Any) -> Dict[str, torch.Tensor]:
        """Run the window-scope providers the stages need, once, on the uint8 windows."""
        needed = self._window_requires(*stages)
        if not needed:
            return {}
        if raw is None:
            raise ValueError(f"the head or a later stage needs auxiliary features {needed}, computed from the "
                             f"uint8 image: use predict/encode_images, or pass raw= (not pre-normalised tensors "
                             f"alone)")
        return {name: self.features[name](raw.to(self.device)) for name in needed}

    def _image_providers(self) -> Dict[str, nn.Module]:
        return {n: p for n, p in self.features.items() if getattr(p, "scope", "window") != "window"}

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput], bgr: bool = False,
                      heads: Optional[Mapping[str, Head]] = None, requires: Sequence[str] = ()) -> List[Any]:
        """Image contexts of several images; their windows share forward batches.

        ``requires``: extra window-scope providers to run (for stages outside the segmenter,
        such as a :class:`~ovdense.detector.Detector`'s proposal source).
        """
        loaded = []
        for image in images:
            t0 = time.perf_counter()
            path = image_path(image)
            rgb = load_image(image, bgr=bgr)
            raw, normalised = self.preprocessor(rgb, self.device, path or "image")
            loaded.append((normalised, raw, rgb, path, (time.perf_counter() - t0) * 1e3))
        feats = self.encode_normalized([n for n, *_ in loaded], [r.shape[:2] for _, _, r, *_ in loaded],
                                       heads=heads, raw=[r for _, r, *_ in loaded], requires=requires,
                                       originals=[(rgb, path) for _, _, rgb, path, _ in loaded])
        for f, (_, _, rgb, path, load_ms) in zip(feats, loaded):
            for one in (f.values() if isinstance(f, dict) else [f]):
                one.image, one.path = rgb, path
                one.timings["load"] = load_ms
        return feats

    def encode_image(self, image: ImageInput, bgr: bool = False, requires: Sequence[str] = ()) -> ImageContext:
        """The context of one image (reusable with any vocabulary)."""
        return self.encode_images([image], bgr=bgr, requires=requires)[0]

    @torch.no_grad()
    def encode_normalized(self, images: Sequence[torch.Tensor],
                          original_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                          heads: Optional[Mapping[str, Head]] = None,
                          raw: Optional[Sequence[torch.Tensor]] = None,
                          requires: Sequence[str] = (),
                          originals: Optional[Sequence[Tuple[Optional[np.ndarray], Optional[str]]]] = None
                          ) -> List[Any]:
        """Contexts of already resized and normalised images ``[3, H, W]``.

        ``original_sizes`` are the sizes results are returned at (default: the input size).
        ``raw``: the same images as uint8 ``[3, H, W]``, needed by stages that read providers.
        ``originals``: per image, the uint8 RGB input ``(H, W, 3)`` and its path (either may be
        None), kept in the contexts; image-scope providers that a head reads run on them.
        With ``heads`` (name -> Head) every image gives a dict name -> ImageContext, the
        CLIP prefix and the auxiliary features shared by the heads.
        """
        if original_sizes is None:
            original_sizes = [tuple(x.shape[-2:]) for x in images]
        head_map = {None: self.head} if heads is None else dict(heads)
        self._check_requirements(*head_map.values())
        unknown = [n for n in requires if n not in self.features]
        if unknown:
            raise ValueError(f"no feature provider named {unknown}; configured: {sorted(self.features)}")
        stages = (*head_map.values(), *self.refiners, self.decoder, _Requires(tuple(requires)))
        providers = self._image_providers()
        head_image = self._head_image_requires(*head_map.values())
        originals = list(originals) if originals is not None else [(None, None)] * len(images)
        plans, early = [], []
        for i, x in enumerate(images):
            x = x.to(self.device, torch.float32)
            boxes, pad = self.windows.plan(tuple(x.shape[-2:]))
            windows_raw = crop_windows(raw[i].to(self.device), boxes, pad) if raw is not None else None
            plans.append((x, boxes, pad, crop_windows(x, boxes, pad, self._pad_fill()), windows_raw))
            # a context before the windows run, for image-scope maps the head reads; the
            # final context inherits what it computed (and any value it shared, e.g. SAM's)
            ctx = ImageContext(
                features=x.new_empty(0), boxes=boxes, pad=pad, resized_size=tuple(x.shape[-2:]),
                original_size=tuple(int(v) for v in original_sizes[i]), whole=self.windows.whole, guide=x,
                stretch_pad=self.windows.pad_mode == "end",
                resized_image=raw[i].to(self.device) if raw is not None else None,
                image=originals[i][0], path=originals[i][1], providers=providers)
            early.append((ctx, {name: self._image_map_windows(ctx, name) for name in head_image}))

        # windows of equal shape from all images run together, `batch_size` at a time
        outputs: List[Dict[Any, List[DenseFeatures]]] = [{name: [] for name in head_map} for _ in plans]
        aux_out: List[List[Dict[str, torch.Tensor]]] = [[] for _ in plans]
        groups: Dict[tuple, List[Tuple[int, int]]] = {}
        for i, plan in enumerate(plans):
            for j in range(plan[3].shape[0]):
                groups.setdefault(tuple(plan[3].shape[1:]), []).append((i, j))
        t0 = time.perf_counter()
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                batch = torch.stack([plans[i][3][j] for i, j in chunk])
                batch_raw = torch.stack([plans[i][4][j] for i, j in chunk]) if raw is not None else None
                aux = self._aux(batch_raw, *stages)
                window_aux = dict(aux)
                for name in head_image:
                    window_aux[name] = torch.stack([early[i][1][name][j] for i, j in chunk])
                if heads is None:
                    per_head = {None: self._forward(batch, window_aux)}
                else:
                    view = None
                    if any(h.reads_clip_image for h in head_map.values()):
                        view = self.backbone.prefix(batch, taps=sorted({t for h in head_map.values() for t in h.taps}),
                                                    keep_inputs=any(h.keeps_block_inputs for h in head_map.values()))
                    per_head = {name: head(view, self.backbone, window_aux) for name, head in head_map.items()}
                for name, dense in per_head.items():
                    for k, (i, _) in enumerate(chunk):
                        outputs[i][name].append(dense[k])
                for k, (i, _) in enumerate(chunk):
                    aux_out[i].append({n: t[k:k + 1] for n, t in aux.items()})
        synchronize(self.device)
        per_image_ms = (time.perf_counter() - t0) * 1e3 / max(len(plans), 1)
        results = []
        for k, ((x, boxes, pad, _, _), feats, aux_parts, size) in enumerate(zip(plans, outputs, aux_out,
                                                                                original_sizes)):
            first = early[k][0]
            aux = {n: torch.cat([p[n] for p in aux_parts]) for n in (aux_parts[0] if aux_parts else {})}
            made = {}
            for name, parts in feats.items():
                dense = DenseFeatures.cat(parts)
                made[name] = ImageContext(
                    features=dense.features, boxes=boxes, pad=pad, resized_size=tuple(x.shape[-2:]),
                    original_size=(int(size[0]), int(size[1])), whole=self.windows.whole, guide=x,
                    stretch_pad=self.windows.pad_mode == "end",
                    extras=dense.extras, aux=aux, resized_image=first.resized_image, image=first.image,
                    path=first.path, image_level=first.image_level, _shared=first._shared,
                    timings={"features": per_image_ms}, providers=providers,
                    window_scorer=self._window_scorer(self.head if name is None else heads[name]),
                    window_rules=tuple(self.decoder.window_rules))
            for name, context in made.items():
                head = self.head if name is None else heads[name]
                finish = getattr(head, "finish_context", None)
                if finish is not None:  # heads that work on the whole image once its windows ran (Trident)
                    finish(context, self.backbone)
            results.append(made[None] if heads is None else made)
        return results

    # ------------------------------------------------------------------ logits
    @staticmethod
    def _text(vocabulary: Union[EncodedVocabulary, torch.Tensor], device: torch.device) -> torch.Tensor:
        text = vocabulary.text if isinstance(vocabulary, EncodedVocabulary) else vocabulary
        return text.to(device, torch.float32)

    def _window_scorer(self, head: Head) -> Optional[Callable[[ImageContext, torch.Tensor], torch.Tensor]]:
        """The one seam for heads that score windows themselves: when ``head`` has a
        ``window_logits(context, text, backbone)`` method (CASS adjusts the text per window and
        adds an image-level prior), every context it makes scores text with it
        (:attr:`ImageContext.window_scorer`), so the decoder, refiners and region scorers all
        see the head's logits."""
        scorer = getattr(head, "window_logits", None)
        if scorer is None:
            return None
        backbone = self.backbone
        return lambda context, text: scorer(context, text, backbone)

    @torch.no_grad()
    def canvas_logits(self, feats: ImageContext, vocabulary: Union[EncodedVocabulary, torch.Tensor],
                      head: Optional[Head] = None) -> torch.Tensor:
        """Logits ``[Q, h, w]`` at the model's resolution: the windows stitched on the resized
        image, or the patch grid of a whole-image pass (:meth:`ImageContext.canvas_logits`: the
        cosines, or the head's own window scores; ``head`` is accepted for compatibility)."""
        rules = self.decoder.window_rules
        if rules and not isinstance(vocabulary, EncodedVocabulary):
            raise ValueError("the decoder's window rules need the vocabulary: pass an EncodedVocabulary")
        return feats.canvas_logits(self._text(vocabulary, feats.device), rules=rules,
                                   vocabulary=vocabulary if rules else None)

    @torch.no_grad()
    def query_logits(self, feats: ImageContext, vocabulary: Union[EncodedVocabulary, torch.Tensor, None] = None,
                     resolution: str = "input") -> torch.Tensor:
        """Cosine logits ``[Q, H, W]`` before refiners, at the input size (or the model's).

        The whole map at once: meant for inspection and small images; ``predict`` works in bands.
        """
        vocabulary = self.resolve_vocabulary(None) if vocabulary is None else vocabulary
        size = self._output_size(feats, resolution)
        return resize_rows(self.canvas_logits(feats, vocabulary), size, 0, size[0])

    @staticmethod
    def _output_size(feats: ImageContext, resolution: str) -> Tuple[int, int]:
        _check_resolution(resolution)
        return feats.output_size(resolution)

    def _band_rows(self, num_maps: int, width: int, halo: int, refiners: Optional[Sequence[Any]] = None) -> int:
        """Output rows per band so that a band with its halo rows fits ``max_chunk_mb``: the logits,
        their probabilities and the refiners' working memory. A band is never shorter than the
        halo, so refiners repeat at most 3x their work on overlapping context rows."""
        refiners = self.refiners if refiners is None else refiners
        floats = 2 * num_maps + max([r.working_floats_per_pixel(num_maps) for r in refiners], default=0)
        elements = int(self.max_chunk_mb * 2**20) // 4
        return max(elements // max(1, floats * width) - 2 * halo, halo, 16)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self,
        image: Union[ImageInput, ImageContext, Sequence[Union[ImageInput, ImageContext]]],
        vocabulary: Union[EncodedVocabulary, VocabularyInput, None] = None,
        return_scores: bool = False,
        bgr: bool = False,
        resolution: str = "input",
        progress: Optional[ProgressCallback] = None,
    ) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segment an image (path, PIL image, ``HxWx3`` uint8 RGB array, or ImageContext).

        Args:
            vocabulary: the classes for this call (an :class:`EncodedVocabulary`, or anything
                ``encode_vocabulary`` takes); default: the segmenter's ``set_classes``.
            return_scores: also return ``(C, H, W)`` probabilities (``C*H*W*4`` bytes).
            resolution: ``"input"`` (the input image's size) or ``"model"`` (the resized
                image the model saw; far cheaper for large photos).
            progress: called as ``progress(rows_done, rows_total)`` after each band of output
                rows (for a progress bar on big images; per image for a list).

        A list gives a list; the windows of all its images are batched together.
        """
        encoded = self.resolve_vocabulary(vocabulary)
        _check_resolution(resolution)
        if isinstance(image, (list, tuple)):
            pending = [i for i, img in enumerate(image) if not isinstance(img, ImageContext)]
            done = dict(zip(pending, self.encode_images([image[i] for i in pending], bgr=bgr)))
            feats = [done.get(i, img) for i, img in enumerate(image)]
            return [self._render(f, encoded, return_scores, resolution, progress) for f in feats]
        feats = image if isinstance(image, ImageContext) else self.encode_image(image, bgr=bgr)
        return self._render(feats, encoded, return_scores, resolution, progress)

    # ------------------------------------------------------------------ streams (robots, services)

    def predict_iter(
        self,
        source: Any,
        vocabulary: Union[EncodedVocabulary, VocabularyInput, None] = None,
        batch_size: int = 1,
        **predict_kwargs: Any,
    ) -> Iterator[SegmentationResult]:
        """Segment a stream lazily, in order: one :class:`SegmentationResult` per image.

        Args:
            source: a folder (the images below it, recursively, sorted), one image file, a
                glob pattern (``"frames/*.png"``), a video file (``.avi``, ``.mp4``, ...;
                decoded with OpenCV, BGR frames turned to RGB), or any iterable of images
                (paths, arrays, PIL images, ImageContexts), e.g. a camera generator.
            vocabulary: as in :meth:`predict` (encoded once here, not per image).
            batch_size: images whose windows share forward passes. At most one batch is
                read ahead, so memory stays bounded for endless streams.
            predict_kwargs: :meth:`predict`'s ``return_scores``, ``bgr`` (for arrays of the
                iterable), ``resolution``, ``progress``.

        ``result.path`` is the file (``f"{video}#{index}"`` for a video frame; None for arrays).
        A file that cannot be read raises :class:`~ovdense.io.ImageLoadError` naming it.
        The source is checked, and the vocabulary encoded, when this is called.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = self.resolve_vocabulary(vocabulary)
        bgr = bool(predict_kwargs.pop("bgr", False))
        items = iter_images(source, bgr=bgr)
        return self._predict_stream(items, encoded, int(batch_size), predict_kwargs)

    def _predict_stream(self, items: Iterator[Tuple[Any, Optional[str]]], encoded: EncodedVocabulary,
                        batch_size: int, predict_kwargs: Dict[str, Any]) -> Iterator[SegmentationResult]:
        batch: List[Tuple[Any, Optional[str]]] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                yield from self._predict_batch(batch, encoded, predict_kwargs)
                batch = []
        if batch:
            yield from self._predict_batch(batch, encoded, predict_kwargs)

    def _predict_batch(self, batch: List[Tuple[Any, Optional[str]]], encoded: EncodedVocabulary,
                       predict_kwargs: Dict[str, Any]) -> List[SegmentationResult]:
        images = [image if path is None or not isinstance(image, np.ndarray) else LoadedImage(image, path)
                  for image, path in batch]  # the path stays known to stages that read side files
        results = self.predict(images, vocabulary=encoded, **predict_kwargs)
        for result, (_, path) in zip(results, batch):
            result.path = path
        return results

    def warmup(self, size: Tuple[int, int] = (480, 640)) -> float:
        """One prediction on a blank ``size`` (H, W) image, so the first real frame does not pay
        for lazy initialisation (allocator, kernels, caches). Uses the current classes, or a
        one-class dummy vocabulary (no text encoding) when none are set. Returns its milliseconds."""
        encoded = self._default
        if encoded is None:
            encoded = self.encode_vocabulary(["warmup"], embeddings=torch.ones(1, self.backbone.embed_dim))
        image = np.zeros((int(size[0]), int(size[1]), 3), dtype=np.uint8)
        t0 = time.perf_counter()
        self.predict(image, vocabulary=encoded)
        synchronize(self.device)
        return (time.perf_counter() - t0) * 1e3

    def fixed_size(self, frame_size: Tuple[int, int],
                   vocabulary: Union[EncodedVocabulary, VocabularyInput, None] = None,
                   **kwargs: Any) -> FixedSizePredictor:
        """A :class:`~ovdense.fixed_size.FixedSizePredictor` for frames of ``frame_size`` (H, W): one
        static-shape step per frame (optionally a CUDA graph, ``cuda_graph=True``), equal to
        :meth:`predict`. ``kwargs``: its ``resolution`` ("model" by default), ``return_scores``,
        ``cuda_graph``, ``graph_warmup``."""
        return FixedSizePredictor(self, frame_size, vocabulary=vocabulary, **kwargs)

    # ------------------------------------------------------------------ dense embeddings
    @torch.no_grad()
    def dense_embeddings(self, image: Union[ImageInput, ImageContext], resolution: str = "model",
                         dtype: Any = np.float32, normalize: bool = False, bgr: bool = False) -> np.ndarray:
        """Per-pixel language-aligned features ``(D, H, W)`` as a numpy array (on the CPU).

        Scoring them against text embeddings gives the segmenter's logits:
        ``np.einsum('dhw,qd->qhw', emb, text)`` equals ``canvas_logits(ctx, text)`` at
        ``resolution="model"`` (windows stitched as the logits are: the maps are linear in the
        features), and ``query_logits`` at ``"input"``. Not for heads that score windows
        themselves (``window_logits``, e.g. CASS, which moves the text per window and adds an
        image prior): their embeddings are the head's features, and their logits differ.

        Args:
            image: an image (anything :meth:`predict` takes) or its ImageContext.
            resolution: ``"model"``: the canvas (the resized image the model saw, ``resized_size``;
                a whole-image pass is resized bilinearly from its patch grid); ``"input"``: the
                input image's size (a plain bilinear resize; ``D*H*W*4`` bytes, 2 in float16,
                e.g. 512 x 1080 x 1920 x 4 = 4.2 GB: prefer "model" or "patch" for big images);
                ``"patch"``: the patch grid (a whole-image pass's features as they are; windows
                stitched on the canvas, then averaged over ``p x p`` cells (the backbone's patch
                size) from the top left: ``ceil(H'/p) x ceil(W'/p)``, a partial last cell
                averaging the pixels it has).
            dtype: ``np.float32`` (default) or ``np.float16`` (``torch`` dtypes work too).
            normalize: rescale every pixel's vector to unit length (cosine similarity). The
                head's window features are unit-length, but stitching overlapping windows and
                resizing average neighbours, so norms can fall a little below 1; with
                ``normalize=True`` the argmax over classes is the same but the logits are not
                exactly ``canvas_logits``.
        """
        if resolution not in ("model", "input", "patch"):
            raise ValueError(f"resolution must be 'model', 'input' or 'patch', got {resolution!r}")
        torch_to_np = {torch.float32: np.float32, torch.float16: np.float16}
        out_dtype = np.dtype(torch_to_np.get(dtype, dtype))
        if out_dtype not in (np.float32, np.float16):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        ctx = image if isinstance(image, ImageContext) else self.encode_image(image, bgr=bgr)
        canvas = ctx.to_canvas(ctx.features.float())  # [D, H', W'] (a whole pass: its patch grid)
        if resolution == "patch":
            if not ctx.whole:
                ph, pw = self.backbone.patch_size
                # p x p cells from the top left; the last row/column of cells averages what is left
                canvas = F.avg_pool2d(canvas[None], (ph, pw), stride=(ph, pw), ceil_mode=True)[0]
            emb = canvas
        else:
            size = ctx.output_size(resolution)
            emb = canvas if tuple(canvas.shape[-2:]) == tuple(size) else resize_rows(canvas, size, 0, size[0])
        if normalize:
            emb = F.normalize(emb, dim=0)
        return emb.cpu().numpy().astype(out_dtype, copy=False)

    @torch.no_grad()
    def predict_heads(self, image: ImageInput, heads: Sequence[Union[str, Mapping[str, Any], Head]],
                      vocabulary: Union[EncodedVocabulary, VocabularyInput, None] = None,
                      return_scores: bool = False, bgr: bool = False) -> Dict[str, SegmentationResult]:
        """Segment one image with several heads under this segmenter's protocol.

        The image is loaded, resized and windowed once; the CLIP prefix and the auxiliary
        features run once per window batch; only the last block differs per head. Keys are
        the head names (or ``head0``, ``head1``... for Head instances).
        """
        encoded = self.resolve_vocabulary(vocabulary)
        built = {}
        for i, spec in enumerate(heads):
            name = spec if isinstance(spec, str) else (spec.get("type") if isinstance(spec, Mapping) else f"head{i}")
            built[name] = build_head(spec).to(self.device).eval()
        per_head = self.encode_images([image], bgr=bgr, heads=built)[0]
        return {name: self._render(feats, encoded, return_scores, "input", head=built[name])
                for name, feats in per_head.items()}

    def _refined_canvas(self, feats: ImageContext, source: torch.Tensor) -> torch.Tensor:
        """``refine_at="model"``: the refiners run once on the logits at the canvas size."""
        size = feats.resized_size
        logits = resize_rows(source, size, 0, size[0])
        band = feats.band((0, size[0]), size)
        for refiner in self.refiners:
            logits = refiner(logits, band)
        return logits

    def _render(self, feats: ImageContext, encoded: EncodedVocabulary, return_scores: bool,
                resolution: str, progress: Optional[ProgressCallback] = None,
                head: Optional[Head] = None) -> SegmentationResult:
        """Logits -> refiners -> decoder (+ rules), band by band over the output rows (``head``:
        the head that made ``feats``, when it is not the segmenter's own)."""
        encoded = encoded.to(self.device)
        vocab = encoded.vocabulary
        num_classes = vocab.num_classes
        q2c = encoded.query_to_class
        timings = dict(feats.timings, logits=0.0, refine=0.0, decode=0.0)
        t0 = time.perf_counter()
        source = self.canvas_logits(feats, encoded, head)
        timings["logits"] += (time.perf_counter() - t0) * 1e3
        selected = None  # select_classes: [C] 0/1 weights from the whole image's logits before refiners
        if self.class_selector is not None:
            t0 = time.perf_counter()
            selected = self.class_selector(feats, source, encoded, self.backbone).to(self.device, torch.float32)
            timings["select"] = (time.perf_counter() - t0) * 1e3
        refiners: Sequence[Any] = self.refiners
        if len(refiners) and self.refine_at == "model":
            t0 = time.perf_counter()
            source = self._refined_canvas(feats, source)
            timings["refine"] += (time.perf_counter() - t0) * 1e3
            refiners = ()
        size = self._output_size(feats, resolution)
        height, width = size
        halo = sum(r.halo_rows for r in refiners)
        step = self._band_rows(source.shape[0], width, halo, refiners)
        bands = [(r, min(r + step, height)) for r in range(0, height, step)]
        kept: Dict[Tuple[int, int], torch.Tensor] = {}

        def band_probs(r0: int, r1: int) -> torch.Tensor:
            if (r0, r1) in kept:
                return kept.pop((r0, r1))
            band = feats.band((r0, r1), size, halo)
            a0, a1 = band.rows
            t = time.perf_counter()
            logits = resize_rows(source, size, a0, a1)
            t1 = time.perf_counter()
            for refiner in refiners:
                logits = refiner(logits, band)
            t2 = time.perf_counter()
            core = feats.band((r0, r1), size) if self.decoder.rules else None
            probs = self.decoder.probabilities(logits[:, r0 - a0:r1 - a0], q2c, num_classes, core, vocab)
            timings["logits"] += (t1 - t) * 1e3
            timings["refine"] += (t2 - t1) * 1e3
            timings["decode"] += (time.perf_counter() - t2) * 1e3
            return probs

        keep = None
        if self.decoder.area_threshold is not None:  # the area rule needs the whole image's areas first
            areas = torch.zeros(num_classes, dtype=torch.long, device=self.device)
            for r0, r1 in bands:
                probs = band_probs(r0, r1)
                weighted = probs if selected is None else probs * selected.view(-1, 1, 1)  # areas of the kept
                areas += self.decoder.argmax_areas(weighted)
                if len(bands) == 1:
                    kept[(r0, r1)] = probs
            keep = self.decoder.area_keep(areas, vocab.has_background)
        if selected is not None:
            keep = selected if keep is None else keep * selected
        label_map = np.empty((height, width), dtype=np.int64)
        keep_scores = return_scores or self.decoder.label_rules_need_scores  # e.g. Trident's SAM refinement
        scores = np.empty((num_classes, height, width), dtype=np.float32) if keep_scores else None
        for r0, r1 in bands:
            probs = band_probs(r0, r1)
            t = time.perf_counter()
            probs, labels = self.decoder.labels(probs, vocab.has_background, keep)
            label_map[r0:r1] = labels.cpu().numpy()
            if scores is not None:
                scores[:, r0:r1] = self.decoder.scores(probs).cpu().numpy()
            timings["decode"] += (time.perf_counter() - t) * 1e3
            if progress is not None:
                progress(r1, height)
        if self.decoder.label_rules:
            t = time.perf_counter()
            given = None if scores is None else torch.from_numpy(scores).to(self.device)
            labels, given = self.decoder.relabel(torch.from_numpy(label_map).to(self.device), feats, vocab, given)
            label_map = labels.cpu().numpy().astype(np.int64)
            if return_scores and given is not None:
                scores = given.cpu().numpy().astype(np.float32)
            timings["decode"] += (time.perf_counter() - t) * 1e3
        if not return_scores:
            scores = None
        return SegmentationResult(label_map=label_map, class_names=list(vocab.class_names),
                                  has_background=vocab.has_background, scores=scores, path=feats.path,
                                  timings=timings)

    def __repr__(self) -> str:
        return (f"OVSegmenter(backbone={self.backbone!r}, head={type(self.head).__name__}, "
                f"preprocess={self.preprocessor}, windows={self.windows}, decode={self.decoder}, "
                f"refiners={[type(r).__name__ for r in self.refiners]}, features={list(self.features)}, "
                f"device={self.device}, dtype={self.dtype})")


class _Requires:
    """A stand-in stage that only declares provider names (for ``encode_images(requires=...)``)."""

    def __init__(self, requires: Tuple[str, ...]) -> None:
        self.requires = requires
