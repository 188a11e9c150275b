"""Exercise 2: a proposal source that reads only the uint8 image.

The image is cut into ``cell x cell`` pixel cells; every cell whose pixels are not flat (grey
std above ``min_std``) becomes a class-agnostic box mask. A region scorer classifies them.
"""
from __future__ import annotations

import numpy as np

from ovdense.proposals.base import ProposalSource
from ovdense.registry import PROPOSALS
from ovdense.structures import Detections


@PROPOSALS.register_module("test_grid")
class GridProposals(ProposalSource):
    def __init__(self, cell: int = 16, min_std: float = 1.0) -> None:
        self.cell, self.min_std = int(cell), float(min_std)

    def __call__(self, context, vocabulary=None, result=None) -> Detections:
        image = np.asarray(context.image)
        h, w = image.shape[:2]
        grey = image.mean(axis=2)
        masks = []
        for y in range(0, h, self.cell):
            for x in range(0, w, self.cell):
                if grey[y:y + self.cell, x:x + self.cell].std() > self.min_std:
                    mask = np.zeros((h, w), bool)
                    mask[y:y + self.cell, x:x + self.cell] = True
                    masks.append(mask)
        if not masks:
            return Detections.empty(h, w)
        return Detections.from_masks(np.stack(masks))
