"""Banded bilinear resizing: PyTorch's rule, and bands bit-identical to one pass."""
import pytest
import torch
import torch.nn.functional as F

from ovdense.ops.bilinear import resize_rows


@pytest.mark.parametrize("src, out", [((3, 21, 28), (375, 500)), ((2, 7, 9), (30, 41)), ((2, 40, 30), (20, 15)),
                                      ((2, 5, 5), (5, 13)), ((2, 9, 4), (30, 4))])
def test_resize_rows_equals_interpolate_and_bands_equal_one_pass(src, out):
    torch.manual_seed(0)
    x = torch.rand(*src)  # values in [0, 1], like probabilities; cosines are in [-1, 1]
    whole = resize_rows(x, out, 0, out[0])
    ref = F.interpolate(x[None], out, mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(whole, ref, atol=2e-6, rtol=0)
    for step in (1, 7, 37):
        bands = torch.cat([resize_rows(x, out, r, min(r + step, out[0])) for r in range(0, out[0], step)], dim=1)
        assert torch.equal(bands, whole)
    with pytest.raises(ValueError, match="outside"):
        resize_rows(x, out, 0, out[0] + 1)
