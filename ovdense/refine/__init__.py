from .pamr import pamr, pamr_stacked

__all__ = ["pamr", "pamr_stacked"]
