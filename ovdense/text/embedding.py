"""Text embeddings of a vocabulary, cached in memory and on disk.

For every query: encode all templates, L2-normalise each, average, L2-normalise again
(the reference methods' recipe). Embeddings are cached per query under a key made of the
model name, a fingerprint of the text tower's weights and the template set, so a
repeated class list costs nothing and a new one only encodes its new queries.

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
import logging
import os
import tempfile
import threading
import warnings
from typing import Dict, Iterator, Optional, Sequence, Tuple

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
    """

    AVERAGES = ("normalized", "raw")

    def __init__(self, backbone: CLIPBackbone, templates: TemplateSpec = "openai80",
                 cache_dir: Optional[str] = None, batch_size: int = 256,
                 progress: Optional[bool] = None, average: str = "normalized") -> None:
        if average not in self.AVERAGES:
            raise ValueError(f"text_encoder: average must be one of {self.AVERAGES}, got {average!r}")
        self.average = average
        self.backbone = backbone
        self.progress = progress
        self.templates = resolve_templates(templates)
        self.cache_dir = default_cache_dir() if cache_dir is None else (cache_dir or None)
        self.batch_size = int(batch_size)
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
        return h.hexdigest()[:20]

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
        """The queries whose longest prompt (with start and end tokens) exceeds the text
        encoder's context, with that length in tokens; the tokenizer truncates them (CLIP
        keeps the first 76 tokens and ends with the end-of-text token). Empty when the
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
            longest = max(len(encode(t.format(q))) + 2 for t in self.templates)
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
        warnings.warn(f"text: {len(long)} class name(s) longer than the text encoder's {context}-token context "
                      f"(with the prompt template) are truncated by the tokenizer, which ignores the words past the "
                      f"limit: {shown}{more}; shorten them", UserWarning, stacklevel=4)

    @torch.no_grad()
    def _encode(self, queries: Sequence[str]) -> torch.Tensor:
        self._warn_too_long(queries)
        prompts = [t.format(q) for q in queries for t in self.templates]
        from tqdm import tqdm

        starts = range(0, len(prompts), self.batch_size)
        # long vocabularies take minutes on CPU (80 templates per query): show progress
        show = _PROGRESS.get() if self.progress is None else self.progress
        bar = tqdm(starts, desc=f"text ({len(queries)} queries x {len(self.templates)} templates)", unit="batch",
                   disable=not show or len(starts) < 4, leave=False)
        chunks = [self.backbone.encode_text(prompts[i:i + self.batch_size]).float() for i in bar]
        if self.average == "raw":
            return torch.cat(chunks).reshape(len(queries), len(self.templates), -1).mean(dim=1)
        emb = F.normalize(torch.cat(chunks), dim=-1).reshape(len(queries), len(self.templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

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
