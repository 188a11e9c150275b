"""Evaluation: mmseg-style mIoU, COCO AP via pycocotools, sharded/resumable runners."""

from ovdense.evaluation.miou import (
    SemanticEvaluator,
    SemanticMetrics,
    confusion_matrix,
    metrics_from_confusion,
)

__all__ = [
    "SemanticEvaluator",
    "SemanticMetrics",
    "confusion_matrix",
    "evaluate_coco",
    "evaluate_semantic",
    "metrics_from_confusion",
]


def __getattr__(name: str):
    """Lazy access to the runners so importing the package stays light."""
    if name == "evaluate_semantic":
        from ovdense.evaluation.semantic_runner import evaluate_semantic

        return evaluate_semantic
    if name == "evaluate_coco":
        from ovdense.evaluation.coco import evaluate_coco

        return evaluate_coco
    raise AttributeError(f"module 'ovdense.evaluation' has no attribute {name!r}")
