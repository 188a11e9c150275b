from .pamr import pamr

__all__ = ["pamr"]
