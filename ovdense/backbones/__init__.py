from .clip import BlockView, CLIPBackbone, WeightsFormatError, WeightsNotFoundError

__all__ = ["BlockView", "CLIPBackbone", "WeightsFormatError", "WeightsNotFoundError"]
