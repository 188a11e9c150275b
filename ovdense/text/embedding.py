"""Text embeddings of a vocabulary, cached in memory and on disk.

For every query: encode all templates, L2-normalise each, average, L2-normalise again
(the reference methods' recipe). Optional extra prompts (OV-Stitcher's class-biased
templates) add whole sentences to a query's prompts before the average. Embeddings are
cached per query under a key made of the model name, a fingerprint of the text tower's
weights, the template set and a digest of the extra prompts, so a repeated class list costs
nothing and a new one only encodes its new queries.

An embedder may be shared by threads: its cache is guarded by a lock, and the text tower
runs outside it.

Encoding a long vocabulary shows a progress bar; ``TextEmbedder(progress=False)`` hides it, and
``with text_progress(False):`` hides it for the embedders that do not say (what ``--quiet``
does around a command's model build, where the embedder is made inside the segmenter).
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..backbones.clip import CLIPBackbone
from .templates import TemplateSpec, resolve_templates

logger = logging.getLogger(__name__)


_PROGRESS: "contextvars.ContextVar[bool]" = contextvars.ContextVar("ovdense_text_progress", default=True)


@contextlib.contextmanager
def text_progress(enabled: bool) -> Iterator[None]:
    """Within the block, embedders made with ``progress=None`` (the default) show their
    encoding bar only if ``enabled``."""
    token = _PROGRESS.set(bool(enabled))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


#: ``extra_prompts``: a path to a JSON file, or a mapping query -> sentences, or None.
ExtraPromptSpec = Union[str, "os.PathLike[str]", Mapping[str, Sequence[str]], None]

_EXTRA_KEY = "text_encoder=dict(extra_prompts=...)"


def _check_extra_prompts(data: Any, where: str) -> Dict[str, Tuple[str, ...]]:
    """``data`` as ``{query: (sentence, ...)}``, or ValueError naming ``where`` and the problem.
    Queries with no sentences are left out (they get the templates only, as with no entry)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a JSON object mapping each class name to a list of sentences, "
                         f"not a {type(data).__name__}")
    out: Dict[str, Tuple[str, ...]] = {}
    for query, sentences in data.items():
        if not isinstance(query, str):
            raise ValueError(f"{where}: keys must be class names (strings), got {query!r}")
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, (list, tuple)):
            raise ValueError(f"{where}: {query!r} maps to a {type(sentences).__name__}, not a list of sentences")
        bad = [i for i, t in enumerate(sentences) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"{where}: {query!r} item {bad[0]} is a {type(sentences[bad[0]]).__name__}, "
                             f"not a string")
        if sentences:
            out[query] = tuple(sentences)
    return out


def load_extra_prompts(spec: ExtraPromptSpec) -> Optional[Dict[str, Tuple[str, ...]]]:
    """The extra prompt sentences of :class:`TextEmbedder` (``extra_prompts``) as
    ``{query: (sentence, ...)}``: read from a JSON file (a path) or checked from a mapping; None
    for None. A missing file raises FileNotFoundError, a file that is not JSON or not an object
    of lists of strings ValueError, each naming the file and the config key."""
    if spec is None:
        return None
    if isinstance(spec, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(spec))
        if not os.path.exists(path):
            raise FileNotFoundError(f"text_encoder: extra_prompts file {path!r} not found (config key "
                                    f"{_EXTRA_KEY}: a JSON file mapping class names to lists of sentences)")
        where = f"text_encoder: extra_prompts file {path!r}"
        if os.path.isdir(path):
            raise ValueError(f"{where} is a folder, not a JSON file ({_EXTRA_KEY})")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where} is not valid JSON ({err}; {_EXTRA_KEY})") from None
        return _check_extra_prompts(data, where)
    if isinstance(spec, Mapping):
        return _check_extra_prompts(spec, "text_encoder: extra_prompts")
    raise TypeError(f"extra_prompts must be a path to a JSON file or a mapping of class names to lists of "
                    f"sentences, got {type(spec).__name__}")


def default_cache_dir() -> str:
    """``$OVDENSE_CACHE_DIR`` or ``~/.cache/ovdense``."""
    return os.environ.get("OVDENSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ovdense")


class TextEmbedder:
    """Encodes queries with a CLIP text tower; caches per query (config section ``text``).

    Args:
        backbone: the CLIP model.
        templates: ``"openai80"``, ``"simple"``, ``"none"`` or a list of ``str.format``
            patterns (see :func:`resolve_templates`).
        cache_dir: directory of the disk cache; None = :func:`default_cache_dir`, ``""`` =
            memory only.
        batch_size: prompts per text-encoder call.
        progress: show a bar while encoding (only when it takes 4 batches or more); None:
            as :func:`text_progress` says where the encoding runs (shown by default).
        average: ``"normalized"`` (default: the mean of the L2-normalised template embeddings,
            normalised again) or ``"raw"``: the mean of the unnormalised template embeddings, left
            unnormalised (Talk2DINO's ``build_text_embedding``: its projection was trained on raw
            CLIP text embeddings, whose norm it depends on).
        extra_prompts: OV-Stitcher's class-biased templates (config key
            ``text_encoder=dict(extra_prompts=...)``): a path to a JSON file, or a mapping, from a
            query (one class name or synonym, matched exactly) to a list of whole sentences
            describing it, e.g. ``{"aeroplane": ["a large metal aircraft with wings", ...]}``. A
            query's prompts are its templated prompts followed by its sentences, used as they are
            (not formatted); a query with no entry gets the templates only. ``average`` then runs
            over all of a query's prompts (normalised: each prompt L2-normalised, mean,
            L2-normalised again, as OV-Stitcher's ``generate_category_embeddings``). OV-Stitcher's
            repository (atw617/OV-Stitcher) ships ``prompts/class_biased_template.json``, which
            ovdense does not redistribute: download it and give its local path (a relative path is
            relative to the current folder). The file is read and checked here; the cache key holds
            a digest of its content, so embeddings with and without it (or with another file)
            never mix.
    """

    AVERAGES = ("normalized", "raw")

    def __init__(self, backbone: CLIPBackbone, templates: TemplateSpec = "openai80",
                 cache_dir: Optional[str] = None, batch_size: int = 256,
                 progress: Optional[bool] = None, average: str = "normalized",
                 extra_prompts: ExtraPromptSpec = None) -> None:
        if average not in self.AVERAGES:
            raise ValueError(f"text_encoder: average must be one of {self.AVERAGES}, got {average!r}")
        self.average = average
        self.backbone = backbone
        self.progress = progress
        self.templates = resolve_templates(templates)
        self.cache_dir = default_cache_dir() if cache_dir is None else (cache_dir or None)
        self.batch_size = int(batch_size)
        # {query: sentences}, queries without sentences left out; None when not given
        self.extra_prompts: Optional[Dict[str, Tuple[str, ...]]] = load_extra_prompts(extra_prompts)
        self.extra_prompts_digest: Optional[str] = None  # sha1 of the sentences (sorted queries), None if none
        if self.extra_prompts:
            content = json.dumps(self.extra_prompts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self.extra_prompts_digest = hashlib.sha1(content.encode()).hexdigest()
        self._memory: Dict[str, torch.Tensor] = {}
        self._disk_loaded = False
        self._lock = threading.RLock()
        self.encoded_queries = 0  # how many queries went through the text encoder (for tests/benchmarks)

    @property
    def key(self) -> str:
        h = hashlib.sha1()
        h.update(self.backbone.name.encode())
        h.update(self.backbone.weights_fingerprint().encode())
        h.update("\n".join(self.templates).encode())
        if self.average != "normalized":
            h.update(f"\naverage={self.average}".encode())
        if self.extra_prompts_digest:
            h.update(f"\nextra_prompts={self.extra_prompts_digest}".encode())
        return h.hexdigest()[:20]

    def extra_sentences(self, query: str) -> Tuple[str, ...]:
        """The extra prompt sentences of ``query`` (empty when it has none)."""
        return self.extra_prompts.get(query, ()) if self.extra_prompts else ()

    def prompts(self, query: str) -> List[str]:
        """Every prompt of ``query``: the templates filled with it, then its extra sentences."""
        return [t.format(query) for t in self.templates] + list(self.extra_sentences(query))

    def _disk_path(self) -> Optional[str]:
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, "text", f"{self.key}.pt")

    def _load_disk(self) -> None:
        if self._disk_loaded:
            return
        self._disk_loaded = True
        path = self._disk_path()
        if path and os.path.isfile(path):
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                for q, emb in stored.items():
                    self._memory.setdefault(q, emb)
            except Exception as err:  # a corrupt cache is re-built, never fatal
                logger.warning("ignoring unreadable text-embedding cache %s: %s", path, err)

    def _save_disk(self) -> None:
        path = self._disk_path()
        if not path:
            return
        tmp = None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            os.close(fd)
            torch.save({q: e.cpu() for q, e in self._memory.items()}, tmp)
            os.replace(tmp, path)
        except OSError as err:
            # an unwritable cache costs re-encoding next time, never the run: keep it in memory
            logger.warning("text-embedding cache %s not written (%s); embeddings stay in memory only "
                           "(set OVDENSE_CACHE_DIR to a writable folder)", path, err)
            self.cache_dir = None
            if tmp and os.path.exists(tmp):
                os.remove(tmp)

    def too_long(self, queries: Sequence[str]) -> Dict[str, int]:
        """The queries whose longest prompt (templates and extra sentences, with start and end
        tokens) exceeds the text encoder's context, with that length in tokens; the tokenizer
        truncates them (CLIP keeps the first 76 tokens and ends with the end-of-text token). Empty when the
        backbone's tokenizer cannot count tokens (no ``encode`` and ``context_length``)."""
        try:
            tok = self.backbone.tokenizer()
        except Exception:  # fakes and backbones without an open_clip tokenizer
            return {}
        encode, context = getattr(tok, "encode", None), getattr(tok, "context_length", None)
        if not callable(encode) or not isinstance(context, int) or getattr(tok, "reduction_fn", None) is not None:
            return {}
        out = {}
        for q in queries:
            longest = max(len(encode(p)) + 2 for p in self.prompts(q))
            if longest > context:
                out[q] = longest
        return out

    def _warn_too_long(self, queries: Sequence[str]) -> None:
        long = self.too_long(queries)
        if not long:
            return
        context = self.backbone.tokenizer().context_length
        shown = "; ".join(f"{q[:60] + '...' if len(q) > 60 else q!r} ({n} tokens)" for q, n in list(long.items())[:3])
        more = f" and {len(long) - 3} more" if len(long) > 3 else ""
        extra = any(self.extra_sentences(q) for q in long)
        warnings.warn(f"text: {len(long)} class name(s) longer than the text encoder's {context}-token context "
                      f"(with the prompt template{' or an extra_prompts sentence' if extra else ''}) are truncated "
                      f"by the tokenizer, which ignores the words past the limit: {shown}{more}; shorten them"
                      f"{' (or their extra_prompts sentences)' if extra else ''}", UserWarning, stacklevel=4)

    @torch.no_grad()
    def _encode(self, queries: Sequence[str]) -> torch.Tensor:
        self._warn_too_long(queries)
        counts = [len(self.templates) + len(self.extra_sentences(q)) for q in queries]
        extra = sum(counts) - len(queries) * len(self.templates)  # extra sentences among these queries
        prompts = [p for q in queries for p in self.prompts(q)]
        from tqdm import tqdm

        starts = range(0, len(prompts), self.batch_size)
        # long vocabularies take minutes on CPU (80 templates per query): show progress
        show = _PROGRESS.get() if self.progress is None else self.progress
        desc = f"text ({len(queries)} queries x {len(self.templates)} templates"
        desc += f" + {extra} extra sentences)" if extra else ")"
        bar = tqdm(starts, desc=desc, unit="batch", disable=not show or len(starts) < 4, leave=False)
        if self.extra_prompts is not None:
            without = [q for q in queries if not self.extra_sentences(q)]
            if without:  # as OV-Stitcher prints them: a name spelt unlike the file's key gets no sentences
                logger.info("text: %d of %d queries have no extra_prompts sentences (templates only): %s%s",
                            len(without), len(queries), ", ".join(repr(q) for q in without[:10]),
                            " ..." if len(without) > 10 else "")
        chunks = [self.backbone.encode_text(prompts[i:i + self.batch_size]).float() for i in bar]
        if not extra:  # every query has the templates only: one reshape (the numbers of the plain recipe)
            if self.average == "raw":
                return torch.cat(chunks).reshape(len(queries), len(self.templates), -1).mean(dim=1)
            emb = F.normalize(torch.cat(chunks), dim=-1).reshape(len(queries), len(self.templates), -1)
            return F.normalize(emb.mean(dim=1), dim=-1)
        # queries have different numbers of prompts: average each query's own rows
        emb = torch.cat(chunks)
        if self.average == "raw":
            return torch.stack([rows.mean(dim=0) for rows in emb.split(counts)])
        emb = F.normalize(emb, dim=-1)
        return F.normalize(torch.stack([rows.mean(dim=0) for rows in emb.split(counts)]), dim=-1)

    def __call__(self, queries: Sequence[str]) -> torch.Tensor:
        """``[Q, D]`` float32 embeddings, on CPU (L2-normalised unless ``average="raw"``)."""
        with self._lock:
            self._load_disk()
            missing = list(dict.fromkeys(q for q in queries if q not in self._memory))
        if missing:
            emb = self._encode(missing).cpu()
            with self._lock:
                for q, e in zip(missing, emb):
                    self._memory.setdefault(q, e)
                self.encoded_queries += len(missing)
                self._save_disk()
        with self._lock:
            return torch.stack([self._memory[q] for q in queries])

    def cached(self, queries: Sequence[str]) -> Tuple[bool, ...]:
        with self._lock:
            self._load_disk()
            return tuple(q in self._memory for q in queries)
