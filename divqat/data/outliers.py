"""An outlier set made offline for outlier exposure: glyphs and procedural shapes, never digits
(docs/science.md §8, "Aimed at labels"; docs/guide/label-only.md).

A defense that changes its answers on out-of-distribution queries must learn what "out of
distribution" looks like without seeing the attacker's queries (Fashion-MNIST against an
MNIST victim and the reverse): outlier exposure (Hendrycks et al., ICLR 2019) with a set made
for the purpose, as adaptive misinformation (Kariyappa & Qureshi, CVPR 2020) and EDM
(Kariyappa et al., ICLR 2021) do. ``glyphs`` is such a set, rendered here from the fonts
matplotlib ships (DejaVu and STIX, no download):

- 3 in 4 images: one character drawn with Pillow's ``ImageFont.truetype`` in a random font
  of :data:`FONT_FILES` at 0.5-0.9 of the image side, stroke width 0-2 px (per 28 px), then a
  random affine map (rotation within 30 degrees, shear within 0.3, scale 0.8-1.2, shift
  within 10 % of the side);
- 1 in 4: a procedural shape: 1-4 straight lines, an open arc (60-270 degrees), a filled or
  outlined polygon (3-6 vertices), or a texture (a sine grating or a checkerboard);
- ink of intensity U(0.6, 1) on a background of U(0, 0.3) (per channel for 3-channel sets),
  plus Gaussian noise of standard deviation U(0, 0.1); images clipped to [0, 1] and stored
  as bytes.

Characters: the letters (L*), symbols (S*) and punctuation (P*) of the Latin, Greek, Cyrillic,
Armenian, Hebrew, Georgian, letter-like, arrow, mathematical and geometric blocks that a font
covers. No digit in any script: every character of Unicode category N (Nd, Nl, No) is out, and
so is every character whose name says DIGIT, NUMBER, NUMERAL, FRACTION, CIRCLE or RING and
every character that decomposes (NFKD) to one of :data:`DIGIT_LOOKALIKES` (O o Q D and their
Greek and Cyrillic twins look like 0; l I i j | ! look like 1; Z z like 2; З з Ʒ like 3; Ч like
4; S s Ѕ like 5; б G b like 6; B ß β & like 8; g q like 9). An outlier set that contained digits
would teach an MNIST victim to mislead on its own task. Procedural arcs are open for the same
reason (a closed ellipse is a 0).

Everything is drawn from ``numpy.random.RandomState(seed)``, so a (count, channels, size,
seed) names one set; it is generated on first use and cached under divqat's data cache root
(:func:`divqat.data.sources.cache_root`) as ``outliers/glyphs-v{GENERATOR_VERSION}-...npy``
(atomic write), and read back from there afterwards.
"""
from __future__ import annotations

import functools
import io
import math
import os
import unicodedata
from pathlib import Path

import numpy as np
import torch

from divqat.checks import check_choice, check_int
from divqat.utils import atomic_write

from .sources import cache_root

__all__ = ["OUTLIER_SETS", "FONT_FILES", "DIGIT_LOOKALIKES", "GENERATOR_VERSION", "glyph_characters",
           "render_glyphs", "load_outliers", "outlier_batch", "outlier_cache_path"]

OUTLIER_SETS = ("glyphs",)
GENERATOR_VERSION = 1  # part of the cache file name: bump it whenever the images change
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
              "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf",
              "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf")
# (first, last) codepoints of the blocks drawn from
BLOCKS = ((0x21, 0x7E), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x531, 0x58F), (0x5D0, 0x5EA),
          (0x10A0, 0x10FF), (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x25A0, 0x25FF))
DIGIT_LOOKALIKES = frozenset("OoQDºΟοОоՕօΘθ" "lIij|!ıȷJΙιІіЈјӀ" "ZzΖƧƨ" "ЗзƷʒЭэȜȝƸƹǮǯӠӡ" "Чч" "SsЅѕƼƽ" "бGb" "BßβΒВв&ȢȣȸȹƐ" "gqɡ")
EXCLUDED_NAME_WORDS = ("DIGIT", "NUMBER", "NUMERAL", "FRACTION", "CIRCLE", "RING")
SHAPE_SHARE = 0.25
DEFAULT_COUNT = 12000  # images of the training set of outliers (outlier_batch's default)


def is_outlier_character(ch):
    """Whether ``ch`` may be drawn (module docstring): a letter, symbol or punctuation mark that
    is no digit in any script and looks like none."""
    category = unicodedata.category(ch)
    if category[0] not in "LSP" or ch in DIGIT_LOOKALIKES:
        return False
    name = unicodedata.name(ch, "")
    if not name or any(word in name for word in EXCLUDED_NAME_WORDS):
        return False
    base = unicodedata.normalize("NFKD", ch)
    return not any(c in DIGIT_LOOKALIKES or unicodedata.category(c)[0] == "N" for c in base)


def _font_dir():
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=1)
def glyph_characters():
    """``{font file: sorted string of the characters it covers and may be drawn}``."""
    from fontTools.ttLib import TTFont

    allowed = [chr(c) for first, last in BLOCKS for c in range(first, last + 1) if is_outlier_character(chr(c))]
    table = {}
    for name in FONT_FILES:
        cmap = TTFont(_font_dir() / name, lazy=True).getBestCmap()
        table[name] = "".join(ch for ch in allowed if ord(ch) in cmap)
    return table


@functools.lru_cache(maxsize=64)
def _font(name, pixels):
    from PIL import ImageFont

    return ImageFont.truetype(str(_font_dir() / name), pixels)


def _affine(image, rng, size):
    """``image`` under a random rotation, shear, scale and shift about its centre."""
    from PIL import Image

    angle, shear = math.radians(rng.uniform(-30, 30)), rng.uniform(-0.3, 0.3)
    scale, (dx, dy) = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1, 2) * size
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    a, b, d, e = cos, sin + shear * cos, -sin, cos - shear * sin  # output -> input map (PIL's convention)
    c0 = size / 2
    c, f = c0 - a * (c0 + dx) - b * (c0 + dy), c0 - d * (c0 + dx) - e * (c0 + dy)
    return image.transform((size, size), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR)


def _glyph_mask(rng, size, table, fonts):
    """A float mask in [0, 1] of one random character (redrawn while the glyph is blank)."""
    from PIL import Image, ImageDraw

    while True:
        font_name = fonts[rng.randint(len(fonts))]
        chars = table[font_name]
        ch = chars[rng.randint(len(chars))]
        canvas = Image.new("L", (size, size), 0)
        stroke = int(rng.randint(3) * size / 28)
        ImageDraw.Draw(canvas).text((size / 2, size / 2), ch, fill=255, anchor="mm", stroke_width=stroke,
                                    stroke_fill=255, font=_font(font_name, int(size * rng.uniform(0.5, 0.9))))
        mask = np.asarray(_affine(canvas, rng, size), dtype=np.float32) / 255
        if mask.max() > 0.5:
            return mask


def _shape_mask(rng, size):
    """A float mask in [0, 1] of one procedural shape (module docstring)."""
    from PIL import Image, ImageDraw

    kind = rng.randint(4)
    if kind == 3:  # texture
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        theta, freq = rng.uniform(0, math.pi), rng.uniform(2, 6)
        wave = np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 6.3))
        if rng.rand() < 0.5:
            wave = wave * np.sin(2 * math.pi * freq * (yy * math.cos(theta) - xx * math.sin(theta)))
        return (wave > 0).astype(np.float32) if rng.rand() < 0.5 else (wave + 1) / 2
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, int(rng.randint(1, 4) * size / 28))
    points = lambda n: [tuple(p) for p in rng.uniform(0.1, 0.9, (n, 2)) * size]  # noqa: E731
    if kind == 0:
        for _ in range(rng.randint(1, 5)):
            draw.line(points(2), fill=255, width=width)
    elif kind == 1:
        box = sorted(rng.uniform(0.05, 0.5, 2) * size) + sorted(rng.uniform(0.5, 0.95, 2) * size)
        start = rng.uniform(0, 360)
        draw.arc([box[0], box[1], box[2], box[3]], start, start + rng.uniform(60, 270), fill=255, width=width)
    else:
        vertices = points(rng.randint(3, 7))
        draw.polygon(vertices, fill=255 if rng.rand() < 0.5 else None, outline=255, width=width)
    return np.asarray(canvas, dtype=np.float32) / 255


def _check_set(count, channels, size, seed):
    """ValueError naming the argument unless (count, channels, size, seed) can name a set."""
    for key, value, low in (("count", count, 1), ("channels", channels, 1), ("size", size, 8), ("seed", seed, 0)):
        check_int(key, value, low)


def render_glyphs(count, channels=1, size=28, seed=0):
    """``count`` outlier images (module docstring), uint8 array (count, channels, size, size)."""
    _check_set(count, channels, size, seed)
    rng = np.random.RandomState(seed)
    table = glyph_characters()
    fonts = sorted(name for name, chars in table.items() if chars)
    out = np.empty((count, channels, size, size), np.uint8)
    for i in range(count):
        mask = _shape_mask(rng, size) if rng.rand() < SHAPE_SHARE else _glyph_mask(rng, size, table, fonts)
        ink, background = rng.uniform(0.6, 1.0, channels), rng.uniform(0.0, 0.3, channels)
        image = background[:, None, None] + (ink - background)[:, None, None] * mask[None]
        image = image + rng.uniform(0, 0.1) * rng.standard_normal(image.shape)
        out[i] = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return out


def outlier_cache_path(name="glyphs", count=DEFAULT_COUNT, channels=1, size=28, seed=0):
    """Where the set is cached: ``<cache root>/outliers/<name>-v<version>-n..-c..-s..-seed...npy``."""
    return cache_root() / "outliers" / f"{name}-v{GENERATOR_VERSION}-n{count}-c{channels}-s{size}-seed{seed}.npy"


def _cached_codes(path, count, channels, size, seed):
    path = Path(path)
    if path.is_file():
        codes = np.load(path, allow_pickle=False)
        if codes.shape == (count, channels, size, size) and codes.dtype == np.uint8:
            codes.flags.writeable = False
            return codes
    codes = render_glyphs(count, channels, size, seed)

    def write(f):
        buffer = io.BytesIO()
        np.save(buffer, codes, allow_pickle=False)
        f.write(buffer.getvalue())

    atomic_write(path, write)
    codes.flags.writeable = False
    return codes


def load_outliers(name="glyphs", count=DEFAULT_COUNT, channels=1, size=28, seed=0):
    """The outlier set ``name`` (:data:`OUTLIER_SETS`) as float32 (count, channels, size, size)
    in [0, 1]: generated on first use, then read from its cache file (and kept in memory)."""
    check_choice("outlier set", name, OUTLIER_SETS)
    _check_set(count, channels, size, seed)
    return _float_images(name, count, channels, size, seed).clone()


@functools.lru_cache(maxsize=4)
def _float_images(name, count, channels, size, seed):
    path = outlier_cache_path(name, count, channels, size, seed)
    codes = _cached_codes(os.fspath(path), count, channels, size, seed)
    return torch.from_numpy(codes.astype(np.float32) / 255)


def outlier_batch(like, name="glyphs", count=None, seed=0):
    """``len(like)`` images of the outlier set shaped like ``like`` (N, C, S, S), drawn uniformly
    with replacement by torch's global generator (seeded by the training loop), on ``like``'s
    device and dtype. ``count`` (default :data:`DEFAULT_COUNT`) and ``seed`` name the set."""
    if like.dim() != 4 or like.shape[-1] != like.shape[-2]:
        raise ValueError(f"like must have shape (N, C, S, S), got {tuple(like.shape)}")
    check_choice("outlier set", name, OUTLIER_SETS)
    images = _float_images(name, count or DEFAULT_COUNT, like.shape[1], like.shape[-1], seed)
    index = torch.randint(len(images), (len(like),))
    return images[index].to(like.device, like.dtype)
