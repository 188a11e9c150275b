from .clip import BlockView, CLIPBackbone, WeightsNotFoundError

__all__ = ["BlockView", "CLIPBackbone", "WeightsNotFoundError"]
