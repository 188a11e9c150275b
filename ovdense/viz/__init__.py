"""Pictures: overlays with legends and contours, contact sheets, evaluation charts and reports.

* :mod:`ovdense.viz.draw` (numpy, OpenCV, Pillow; no extra dependency): :func:`draw_overlay`,
  :func:`legend_entries`, :func:`side_by_side`, :func:`contact_sheet`, :func:`save_image`;
* :mod:`ovdense.viz.charts` (matplotlib, the ``[report]`` extra, imported when first used):
  per-class IoU bars, confusion-matrix image, COCO precision-recall curves;
* :mod:`ovdense.viz.report`: the worst-N tracker and the static ``report.html`` writers.
"""
from .colors import class_colors
from .draw import LegendEntry, contact_sheet, contour_mask, draw_overlay, legend_entries, save_image, side_by_side

__all__ = ["LegendEntry", "class_colors", "contact_sheet", "contour_mask", "draw_overlay", "legend_entries",
           "save_image", "side_by_side", "write_semantic_report", "write_coco_report", "WorstImages",
           "render_triptych"]


def __getattr__(name: str):
    """The report functions load lazily (their charts need matplotlib)."""
    if name in ("write_semantic_report", "write_coco_report", "WorstImages", "render_triptych"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module 'ovdense.viz' has no attribute {name!r}")
