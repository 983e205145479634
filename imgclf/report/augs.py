"""Augmentation preview: a few images per class as the training pipeline really sees them.

Each row is one image: the original (as the image loader returns it, resize cache included, with
the part the eval centre crop keeps outlined in red when it cuts anything), its validation view
(the eval transform: ``data.eval_crop_pct``), then ``n`` augmented views drawn by the training
transform (``data.augment`` and its override keys ``crop_scale``/``crop_ratio``/``flips``/``color_jitter``) — the very
objects training uses (``image_loader``, ``train_transform``, ``eval_transform``), undone
with ``denormalize`` for display. Only the backbone's data config is needed, never its weights.

Example::

    cfg = load_config(None, ["data.augment=strong"])
    write_aug_preview(Path("data/cars"), cfg, Path("augs.png"), n=8, per_class=1)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from imgclf.config import Config, DataConfig
from imgclf.data.pipeline import image_loader
from imgclf.data.samples import TrainingSet, load_training_set
from imgclf.data.transforms import AugmentSpec, Preprocessing, denormalize, eval_transform, train_transform
from imgclf.errors import ConfigError, DataError
from imgclf.io import atomic_path

_BACKGROUND = (245, 245, 245)
_TEXT = (30, 30, 30)
_CROP_BOX = (220, 30, 30)
_MAX_CELL = 160
_MIN_CELL = 64


@dataclass
class PreviewRow:
    """One image: its class, path, the original, the validation view and the augmented views.

    ``val`` and ``augmented`` are de-normalised ``(3, H, W)`` tensors in [0, 1].
    """

    label: str
    path: str
    original: Image.Image
    val: torch.Tensor
    augmented: list[torch.Tensor]


@dataclass(frozen=True)
class GridLayout:
    """Where each tile of the preview sits: column 0 original, 1 validation, 2.. augmented."""

    rows: int
    cols: int
    cell: int
    gap: int = 4
    header: int = 20
    caption: int = 16

    @property
    def size(self) -> tuple[int, int]:
        return (
            self.gap + self.cols * (self.cell + self.gap),
            self.header + self.rows * (self.caption + self.cell + self.gap),
        )

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of tile ``(row, col)`` in the image."""
        left = self.gap + col * (self.cell + self.gap)
        top = self.header + row * (self.caption + self.cell + self.gap) + self.caption
        return left, top, left + self.cell, top + self.cell


def backbone_preprocessing(cfg: Config) -> Preprocessing:
    """The preprocessing training would use for ``cfg``, from the backbone's data config alone.

    The model is built on the meta device: no memory, no weights, no download.
    """
    from imgclf.models.backbones import architecture, data_config

    if not cfg.model.backbone:
        raise ConfigError("model.backbone is not set")
    with torch.device("meta"):
        model = architecture(cfg.model.backbone)
    return Preprocessing.from_model(data_config(model), cfg.data.image_size, cfg.data.eval_crop_pct)


def pick_images(samples: TrainingSet, per_class: int, max_classes: int | None, seed: int) -> list[int]:
    """Indices of ``per_class`` images for each of at most ``max_classes`` classes (random, reproducible)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(samples.labels)
    classes = np.arange(len(samples.classes))
    if max_classes is not None and len(classes) > max_classes:
        classes = np.sort(rng.choice(classes, size=max_classes, replace=False))
    picked: list[int] = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        take = min(per_class, len(members))
        picked.extend(int(i) for i in np.sort(rng.choice(members, size=take, replace=False)))
    return picked


def preview_rows(
    samples: TrainingSet,
    data_cfg: DataConfig,
    pre: Preprocessing,
    *,
    n: int = 8,
    per_class: int = 1,
    max_classes: int | None = 12,
    seed: int = 0,
) -> list[PreviewRow]:
    """Load the chosen images through the training loader and draw their views.

    Global RNG state is left as it was: the augmentations draw from a forked, seeded state.
    """
    if n < 1 or per_class < 1:
        raise ConfigError("--n and --per-class must be at least 1")
    loader = image_loader(data_cfg, samples.root, pre)
    augment = train_transform(pre, AugmentSpec.from_config(data_cfg))
    val_view = eval_transform(pre)
    rows: list[PreviewRow] = []
    py_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            torch.manual_seed(seed)
            for i in pick_images(samples, per_class, max_classes, seed):
                try:
                    image = loader(samples.paths[i])
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                    continue  # an unreadable file is skipped, as training skips it
                rows.append(
                    PreviewRow(
                        label=samples.classes[samples.labels[i]],
                        path=samples.rel(samples.paths[i]),
                        original=image,
                        val=denormalize(val_view(image), pre),
                        augmented=[denormalize(augment(image), pre) for _ in range(n)],
                    )
                )
    finally:
        random.setstate(py_state)
    if not rows:
        raise DataError(f"none of the chosen images of {samples.root} could be decoded")
    return rows


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` tensor in [0, 1] as an RGB image (rounded to 8 bits)."""
    array = (tensor.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def default_cell(image_size: int) -> int:
    """Tile size: the training size, kept between 64 and 160 pixels so a grid stays readable."""
    if image_size < _MIN_CELL:
        return image_size * -(-_MIN_CELL // image_size)  # whole-number upscale keeps pixels sharp
    return min(image_size, _MAX_CELL)


def eval_crop_box(size: tuple[int, int], pre: Preprocessing) -> tuple[float, float, float, float] | None:
    """``(left, top, right, bottom)`` of what the eval transform keeps of an image of ``size``
    (resize the shorter side to ``pre.resize_short_side``, centre crop ``pre.image_size``), in the
    image's own pixels; None when it keeps the whole image."""
    w, h = size
    side = pre.image_size * min(w, h) / pre.resize_short_side
    if side >= w and side >= h:
        return None
    bw, bh = min(side, w), min(side, h)
    return (w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2


def _fit(image: Image.Image, cell: int, box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Scale into a ``cell`` square (aspect kept), centred on the background; outline ``box`` (image pixels)."""
    w, h = image.size
    scale = cell / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 and float(scale).is_integer() else Image.Resampling.LANCZOS
    canvas = Image.new("RGB", (cell, cell), _BACKGROUND)
    offset = ((cell - size[0]) // 2, (cell - size[1]) // 2)
    canvas.paste(image.convert("RGB").resize(size, resample), offset)
    if box is not None:
        left, top, right, bottom = (offset[i % 2] + v * scale for i, v in enumerate(box))
        ImageDraw.Draw(canvas).rectangle([left, top, right - 1, bottom - 1], outline=_CROP_BOX)
    return canvas


def _clip(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def render_grid(rows: list[PreviewRow], cell: int, pre: Preprocessing | None = None) -> Image.Image:
    """Draw the preview: a header naming the columns, then per image a caption and its tiles.

    Given ``pre``, the original's tile outlines what the eval crop keeps and the header names the crop.
    """
    cols = 2 + len(rows[0].augmented)
    layout = GridLayout(len(rows), cols, cell)
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=11)
    val_header = "validation" if pre is None else f"eval {pre.crop_pct:g}"  # the eval crop_pct; fits a 64 px tile
    headers = ["original", val_header] + [f"train aug {k}" for k in range(1, cols - 1)]
    for col, text in enumerate(headers):
        left = layout.box(0, col)[0]
        draw.text((left, 4), _clip(draw, text, font, cell), fill=_TEXT, font=font)
    for r, row in enumerate(rows):
        top = layout.box(r, 0)[1]
        draw.text(
            (layout.gap, top - layout.caption + 2),
            _clip(draw, f"{row.label}   ({row.path})", font, layout.size[0] - 2 * layout.gap),
            fill=_TEXT,
            font=font,
        )
        tiles = [row.original, tensor_to_image(row.val)] + [tensor_to_image(t) for t in row.augmented]
        for col, tile in enumerate(tiles):
            box = eval_crop_box(tile.size, pre) if col == 0 and pre is not None else None
            grid.paste(_fit(tile, cell, box), layout.box(r, col)[:2])
    return grid


def aug_preview(
    samples: TrainingSet,
    data_cfg: DataConfig,
    pre: Preprocessing,
    *,
    n: int = 8,
    per_class: int = 1,
    max_classes: int | None = 12,
    seed: int = 0,
    cell: int | None = None,
) -> Image.Image:
    """The preview image for already-loaded ``samples`` (what the run report embeds)."""
    rows = preview_rows(samples, data_cfg, pre, n=n, per_class=per_class, max_classes=max_classes, seed=seed)
    return render_grid(rows, cell or default_cell(pre.image_size), pre)


def write_aug_preview(
    dataset: Path,
    cfg: Config,
    out: Path,
    *,
    n: int = 8,
    per_class: int = 1,
    max_classes: int | None = 12,
    seed: int = 0,
    cell: int | None = None,
) -> tuple[Path, int]:
    """Write the preview PNG of ``dataset`` under ``cfg`` to ``out``; return ``(out, images shown)``."""
    samples = load_training_set(Path(dataset), Path(cfg.data.blocklist) if cfg.data.blocklist else None)
    pre = backbone_preprocessing(cfg)
    rows = preview_rows(samples, cfg.data, pre, n=n, per_class=per_class, max_classes=max_classes, seed=seed)
    image = render_grid(rows, cell or default_cell(pre.image_size), pre)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return out, len(rows)
