"""Class vocabularies: names, synonyms and the background line.

A vocabulary maps *queries* (strings sent to the text encoder) to *classes*: every
synonym is its own query, and a class scores the max over its queries inside the joint
softmax. The name-file format of the reference methods is one
class per line with synonyms separated by ``", "`` (SCLIP, NACLIP) or ``"; "``
(ProxyCLIP, Trident); both are read here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

ClassSpec = Union[str, os.PathLike, Sequence[Union[str, Sequence[str]]]]


@dataclass(frozen=True)
class Vocabulary:
    """Queries and their classes.

    Attributes:
        class_names: display name of each class (its first synonym).
        queries: every synonym of every class, in class order.
        query_to_class: class index of each query.
        has_background: class 0 is a background class (then ``class_names[0]`` is it).
    """

    class_names: Tuple[str, ...]
    queries: Tuple[str, ...]
    query_to_class: Tuple[int, ...]
    has_background: bool = False
    synonyms: Tuple[Tuple[str, ...], ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @classmethod
    def from_synonyms(cls, synonyms: Sequence[Sequence[str]], has_background: bool = False) -> "Vocabulary":
        synonyms = [list(group) for group in synonyms]
        groups = [tuple(s.strip() for s in group if s.strip()) for group in synonyms]
        empty = [i for i, g in enumerate(groups) if not g]
        if empty:
            i = empty[0]
            given = f" (given {synonyms[i]!r})" if synonyms[i] else ""
            raise ValueError(f"class {i} has no name{given}: a class needs a name that is not empty or only "
                             f"whitespace")
        if not groups:
            raise ValueError("the vocabulary is empty")
        seen: dict = {}
        for i, g in enumerate(groups):
            key = g[0].lower()
            if key in seen:
                raise ValueError(f"duplicate class name {g[0]!r} (classes {seen[key]} and {i}): two classes with "
                                 f"one name cannot be told apart in the results; merge their synonyms into one line")
            seen[key] = i
        queries = tuple(q for g in groups for q in g)
        q2c = tuple(i for i, g in enumerate(groups) for _ in g)
        return cls(tuple(g[0] for g in groups), queries, q2c, has_background, tuple(groups))

    def to_lines(self, sep: str = ", ") -> List[str]:
        return [sep.join(g) for g in self.synonyms]


def is_background_name(name: str) -> bool:
    """True when the first synonym of a name-file line is ``background`` (any case)."""
    first = name.replace(";", ",").split(",")[0].strip().lower()
    return first == "background"


def split_synonyms(line: str) -> List[str]:
    """Split one name-file line: ``"; "`` wins over ``", "`` when present."""
    sep = ";" if ";" in line else ","
    return [part.strip() for part in line.split(sep) if part.strip()]


def parse_name_lines(lines: Sequence[str]) -> List[List[str]]:
    """Parse name-file lines; blank lines and ``#`` comments are skipped."""
    groups = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        groups.append(split_synonyms(line))
    return groups


def read_name_file(path: Union[str, os.PathLike]) -> List[List[str]]:
    """Read a class-name file (one class per line, synonyms separated by ``, `` or ``; ``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class-name file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        groups = parse_name_lines(fh.read().splitlines())
    if not groups:
        raise ValueError(f"class-name file {path} holds no class names")
    return groups


def _is_name_file(classes: Union[str, os.PathLike]) -> bool:
    """A single string or path names a class-name file when it is an existing file, when
    it is an ``os.PathLike``, or when it ends in ``.txt`` (then a missing file is an error,
    not a class called ``"x.txt"``)."""
    if not isinstance(classes, str):
        return True
    return os.path.isfile(classes) or classes.strip().lower().endswith(".txt")


def _synonym_list(item: object, where: str) -> List[str]:
    """One class (or the background) given as a list of synonyms; refuses None and non-strings."""
    if isinstance(item, (bytes, bytearray)) or not hasattr(item, "__iter__"):
        raise ValueError(f"{where} is {item!r} ({type(item).__name__}): a class is a string such as "
                         f"'dog, puppy' or a list of synonym strings")
    out = []
    item = list(item)
    for j, syn in enumerate(item):
        if not isinstance(syn, str):
            raise ValueError(f"{where}, synonym {j} is {syn!r} ({type(syn).__name__}), not a string "
                             f"(in {item!r})")
        out.append(syn)
    return out


def _class_groups(classes: object) -> List[List[str]]:
    """The synonym groups of ``classes`` (see :func:`build_vocabulary` for the accepted forms)."""
    if classes is None:
        raise ValueError("classes is None: give a name-file path, one class line such as 'dog, puppy', "
                         "or a list of classes")
    if isinstance(classes, (str, os.PathLike)):
        if _is_name_file(classes):
            return read_name_file(classes)
        return [split_synonyms(classes)]
    if isinstance(classes, (bytes, bytearray)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"classes is {classes!r} ({type(classes).__name__}): give a name-file path, one class "
                         f"line, or a list of classes")
    if isinstance(classes, (set, frozenset)):
        raise ValueError(f"classes is a {type(classes).__name__}, which has no order (the label of each class "
                         f"would change between runs): give a list, e.g. sorted(classes)")
    groups = []
    for i, item in enumerate(classes):
        where = f"class {i}"
        if isinstance(item, str):
            groups.append(split_synonyms(item))
        else:
            groups.append(_synonym_list(item, where))
    return groups


def build_vocabulary(
    classes: ClassSpec,
    background: Optional[Union[str, Sequence[str]]] = None,
) -> Vocabulary:
    """Build a :class:`Vocabulary`.

    The rule for a single string: a string that is the path of an existing file (or ends in
    ``.txt``; a missing ``.txt`` file raises ``FileNotFoundError``) is a class-name file, one
    class per line. Any other single string is ONE class line, synonyms separated by ``", "``
    (or ``"; "``), exactly like one element of a list: ``"dog, puppy"`` and ``["dog, puppy"]``
    both give the class ``dog`` with the synonym ``puppy``. Several classes need a list
    (``["cat", "dog, puppy"]``) or a name file.

    Args:
        classes: a name-file path (``str`` or ``os.PathLike``); one class line; or a list
            whose items are class lines (``"person, man, woman"``) or lists of synonyms
            (``["person", "man", "woman"]``).
        background: optional background line (a synonym string or list), prepended as
            class 0. A name file whose first line is already the background keeps it as is;
            say so with ``background="first"``.

    Raises:
        ValueError: an entry that is not a string or a list of strings (``None`` included),
            naming the entry and its position; an empty vocabulary (``[]``), an empty or
            whitespace-only class, two classes with the same name (case-insensitive), or a
            ``set`` of classes (unordered: the labels would be arbitrary).

    Empty or whitespace-only synonyms inside a class are dropped (``"dog, , puppy"`` is
    ``dog`` and ``puppy``). A synonym shared by two classes is allowed (the reference name
    files have some); it scores both. Names longer than the text encoder's context (77
    tokens for CLIP, with the prompt template) are truncated by the tokenizer: the
    :class:`~ovdense.text.TextEmbedder` warns, naming them.
        FileNotFoundError: a name file that does not exist.
    """
    has_bg = background is not None
    groups = _class_groups(classes)
    if isinstance(background, str) and background == "first":
        return Vocabulary.from_synonyms(groups, has_background=True)
    if has_bg:
        bg = split_synonyms(background) if isinstance(background, str) else _synonym_list(background, "background")
        groups = [bg] + groups
    return Vocabulary.from_synonyms(groups, has_background=has_bg)
