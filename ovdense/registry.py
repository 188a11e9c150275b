"""Small name -> class registries.

A registry is a plain dict with a decorator; configs refer to entries by name
(``head=dict(type="naclip", gaussian_std=5.0)``) and every entry stays a normal class
constructible with keyword arguments.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, List, Mapping, TypeVar, Union

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes or factories."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@HEADS.register("sclip")``."""

        def add(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not obj:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._entries))}"
            ) from None

    def build(self, spec: Union[str, Mapping[str, Any], T], **defaults: Any) -> T:
        """Build from a name, a ``dict(type=name, **kwargs)`` or return an instance as is."""
        if isinstance(spec, str):
            return self.get(spec)(**defaults)
        if isinstance(spec, Mapping):
            kwargs = dict(spec)
            name = kwargs.pop("type")
            return self.get(name)(**{**defaults, **kwargs})
        return spec

    def __getitem__(self, name: str) -> Callable[..., T]:
        return self.get(name)

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


HEADS: Registry = Registry("head")
INSTANCE_STRATEGIES: Registry = Registry("instance strategy")
