"""Stateless tensor operations shared by the stages: windows, banded resizing."""
from .bilinear import resize_rows
from .windows import Box, SlidingWindows, crop_windows, stitch, stitch_grid, window_boxes

__all__ = ["Box", "SlidingWindows", "crop_windows", "resize_rows", "stitch", "stitch_grid", "window_boxes"]
