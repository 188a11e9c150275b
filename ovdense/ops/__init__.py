"""Stateless tensor operations shared by the stages: windows, banded resizing."""
from .bilinear import resize_rows
from .windows import Box, SlidingWindows, crop_windows, stitch, window_boxes

__all__ = ["Box", "SlidingWindows", "crop_windows", "resize_rows", "stitch", "window_boxes"]
