"""Random flips and 90° rotations: the symmetries of a square (the dihedral group D4).

For data without an "up" (micrographs, satellite tiles, defects on a surface) each of the eight
orientations is as likely as the others. ``RandomDihedral`` draws one of them uniformly, from
torch's RNG (so ``torch.manual_seed`` and DataLoader worker seeding make it reproducible), and
works on PIL images and on ``(..., H, W)`` tensors alike, like a torchvision transform.

Example::

    t = RandomDihedral()
    t(image)  # one of the 8 orientations of ``image``
    dihedral(image, 5)  # element 5: rotate 90° once, then flip left-right
"""

from __future__ import annotations

import torch
from PIL import Image

_ROTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def dihedral(image, k: int):
    """Element ``k`` (0..7) of D4: rotate ``k % 4`` quarter turns anticlockwise, then flip left-right if ``k >= 4``."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral element must be 0..7, got {k}")
    quarter, flip = k % 4, k >= 4
    if isinstance(image, torch.Tensor):
        out = torch.rot90(image, quarter, dims=(-2, -1)) if quarter else image
        return out.flip(-1) if flip else out
    if quarter:
        image = image.transpose(_ROTATIONS[quarter])
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image


class RandomDihedral(torch.nn.Module):
    """Apply a uniformly drawn element of D4 (identity included) to a PIL image or a tensor."""

    def forward(self, image):
        return dihedral(image, int(torch.randint(0, 8, (1,)).item()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
