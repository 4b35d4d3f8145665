"""DemoScenes: a built-in, procedurally drawn dataset that needs no files.

Each picture is one large bold shape (circle, square, triangle or cross) plus up to three small
ones, in saturated colours on a plain or linear-gradient background. ``class_label`` is the kind
of the large shape and ``caption`` says in words what is drawn ("a large orange triangle and a
small green cross on a pale sky background"), so the same data serves unconditional,
class-conditional and text-conditional demos. Pictures are drawn from signed distance functions
with one pixel of antialiasing, at any size >= 8.

Every picture is a pure function of (seed, split, index): its random numbers come from a numpy
Generator seeded with those three numbers, so any worker draws the same picture for an index, and
the train and validation splits (different split numbers in the seed) are independent streams.
The caption's phrasing (one of :data:`PHRASINGS`) comes from a second stream of the same numbers,
so captions never change the pictures.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from torch.utils.data import Dataset

from imagebart.util import is_integer

SPLITS = {"train": 0, "validation": 1}
DEFAULT_LENGTHS = {"train": 20000, "validation": 1000}
_SALT = 0x1B4A7  # keeps these streams apart from other users of (seed, index) seeding

# saturated shape colours and muted/dark/light backgrounds (RGB in [0, 1])
SHAPE_COLOURS = np.array([
    [0.90, 0.15, 0.15],  # red
    [0.98, 0.55, 0.08],  # orange
    [0.98, 0.86, 0.12],  # yellow
    [0.15, 0.70, 0.25],  # green
    [0.08, 0.78, 0.86],  # cyan
    [0.15, 0.32, 0.90],  # blue
    [0.55, 0.20, 0.78],  # purple
    [0.90, 0.20, 0.62],  # magenta
    [0.97, 0.97, 0.97],  # white
], dtype=np.float64)
BACKGROUND_COLOURS = np.array([
    [0.10, 0.12, 0.28],  # navy
    [0.16, 0.16, 0.18],  # charcoal
    [0.94, 0.91, 0.83],  # cream
    [0.78, 0.80, 0.82],  # light grey
    [0.07, 0.28, 0.28],  # dark teal
    [0.85, 0.75, 0.60],  # sand
    [0.27, 0.15, 0.27],  # dark plum
    [0.74, 0.86, 0.94],  # pale sky
], dtype=np.float64)
SHAPE_COLOUR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "white")
BACKGROUND_NAMES = ("navy", "charcoal", "cream", "light grey", "dark teal", "sand", "dark plum", "pale sky")
MIN_CONTRAST = 0.45  # Euclidean RGB distance between a shape colour and the background under it


# signed distances (negative inside), in units of the image side; p: (..., 2) as (x, y), y down


def sd_circle(p, r):
    return np.hypot(p[..., 0], p[..., 1]) - r


def sd_box(p, half_w, half_h):
    qx, qy = np.abs(p[..., 0]) - half_w, np.abs(p[..., 1]) - half_h
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def sd_triangle(p, r):
    """Upright equilateral triangle of half side ``r``, centred on its bounding box."""
    k = np.sqrt(3.0)
    x = np.abs(p[..., 0]) - r
    y = -(p[..., 1] - r * k / 6.0) + r / k  # move to the centroid, y up from here on
    fold = x + k * y > 0.0
    x, y = np.where(fold, (x - k * y) / 2.0, x), np.where(fold, (-k * x - y) / 2.0, y)
    x = x - np.clip(x, -2.0 * r, 0.0)
    return -np.hypot(x, y) * np.sign(y)


def sd_cross(p, r):
    arm = 0.36 * r
    return np.minimum(sd_box(p, r, arm), sd_box(p, arm, r))


# one entry per kind: (name, signed distance, scale so kinds of equal "size" look equally big);
# every shape drawn with size r fits in a box of half side r * scale around its centre
KINDS = (
    ("circle", sd_circle, 1.0),
    ("square", lambda p, r: sd_box(p, r, r), 0.9),
    ("triangle", sd_triangle, 1.25),
    ("cross", sd_cross, 1.1),
)


class Shape(NamedTuple):
    """One drawn shape: its kind (index into KINDS), centre (x, y) and size in units of the
    image side, and its colour (index into SHAPE_COLOURS)."""

    kind: int
    centre: np.ndarray
    r: float
    colour: int


class Background(NamedTuple):
    """The background: one colour (``second`` None) or a gradient between two (indices into BACKGROUND_COLOURS)."""

    first: int
    second: int | None


# captions: the large shape, then the small ones in drawing order, then the background
PHRASINGS = (
    "{large}{small} on {background}",
    "{background} with {large}{small}",
    "{large} on {background}{small_with}",
)
_CAPTION_SALT = 0xCA97  # the phrasing stream, apart from the drawing stream


def _shape_words(shape: Shape, size: str) -> str:
    return f"a {size} {SHAPE_COLOUR_NAMES[shape.colour]} {KINDS[shape.kind][0]}"


def _background_words(background: Background) -> str:
    if background.second is None:
        return f"a {BACKGROUND_NAMES[background.first]} background"
    return f"a {BACKGROUND_NAMES[background.first]} to {BACKGROUND_NAMES[background.second]} gradient"


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(shapes: list, background: Background, phrasing: int = 0) -> str:
    """A caption of a scene: its large shape, the small ones and the background, in words."""
    large = _shape_words(shapes[0], "large")
    small = [_shape_words(s, "small") for s in shapes[1:]]
    words = {"large": large, "background": _background_words(background),
             "small": (", " if len(small) > 1 else " and ") + _join(small) if small else "",
             "small_with": f", with {_join(small)}" if small else ""}
    if phrasing == 0 and len(small) > 1:  # "a large X, a small Y and a small Z on ..."
        words["small"] = ", " + _join(small)
    return PHRASINGS[phrasing].format(**words)


class DemoScenes(Dataset):
    """Bold coloured shapes on plain or gradient backgrounds; ``class_label`` = kind of the largest.

    Items: ``image`` float32 (size, size, 3) in [-1, 1], ``class_label`` int in
    0..len(class_names)-1, ``human_label`` (the kind's name) and ``caption`` (see :func:`describe`).
    """

    class_names = tuple(name for name, _, _ in KINDS)

    def __init__(
        self, split: str = "train", size: int = 32, length: int | None = None, seed: int = 0
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if not is_integer(size) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        if length is None:
            length = DEFAULT_LENGTHS[split]
        if not is_integer(length) or length < 1:
            raise ValueError(f"length must be a positive int or None, got {length!r}")
        if not is_integer(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.split, self.size, self.length, self.seed = split, int(size), int(length), int(seed)
        # pixel centres in units of the image side, (H, W, 2) as (x, y)
        c = (np.arange(self.size) + 0.5) / self.size
        self._grid = np.stack(np.meshgrid(c, c, indexing="xy"), axis=-1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for DemoScenes of length {self.length}")
        index = int(index) % self.length
        image, shapes, background = self.draw_scene(self.rng(index))
        label = shapes[0].kind
        return {
            "image": (image * 2.0 - 1.0).astype(np.float32),
            "class_label": label,
            "human_label": self.class_names[label],
            "caption": describe(shapes, background, self.phrasing(index)),
        }

    # drawing

    def rng(self, index: int) -> np.random.Generator:
        """The generator that draws picture ``index``: a pure function of (seed, split, index)."""
        return np.random.default_rng([_SALT, self.seed, SPLITS[self.split], index])

    def phrasing(self, index: int) -> int:
        """Which of :data:`PHRASINGS` picture ``index``'s caption uses (its own stream: pictures stay put)."""
        return int(np.random.default_rng([_CAPTION_SALT, self.seed, SPLITS[self.split], index]).integers(len(PHRASINGS)))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, list[Shape]]:
        """One picture in [0, 1], (H, W, 3), and its shapes (the large one first)."""
        return self.draw_scene(rng)[:2]

    def draw_scene(self, rng: np.random.Generator) -> tuple[np.ndarray, list[Shape], Background]:
        """One picture in [0, 1], (H, W, 3), its shapes (the large one first) and its background."""
        canvas, background = self._background(rng)
        # the large shape first, then 0-3 small ones on top, preferably beside it
        kind = int(rng.integers(len(KINDS)))
        r_big = rng.uniform(0.2, 0.32)
        centre = self._place(rng, r_big * KINDS[kind][2], margin=0.04)
        shapes = [Shape(kind, centre, r_big, self._paint(canvas, kind, centre, r_big, rng, ()))]
        for _ in range(int(rng.choice(4, p=[0.25, 0.3, 0.25, 0.2]))):
            kind = int(rng.integers(len(KINDS)))
            r = rng.uniform(0.07, 0.13)
            extent = r * KINDS[kind][2]
            for _attempt in range(30):  # prefer a free spot; overlaps are allowed when crowded
                centre = self._place(rng, extent, margin=0.02)
                if all(np.abs(centre - s.centre).max() > 1.1 * (extent + s.r * KINDS[s.kind][2])
                       for s in shapes):
                    break
            used = [s.colour for s in shapes]
            shapes.append(Shape(kind, centre, r, self._paint(canvas, kind, centre, r, rng, used)))
        return np.clip(canvas, 0.0, 1.0), shapes, background

    @staticmethod
    def _place(rng, extent, margin) -> np.ndarray:
        """A centre (x, y) that keeps a box of half side ``extent`` inside the picture."""
        low = min(margin + extent, 0.5)
        return rng.uniform(low, 1.0 - low, size=2)

    def _background(self, rng) -> tuple[np.ndarray, Background]:
        index = int(rng.integers(len(BACKGROUND_COLOURS)))
        first = BACKGROUND_COLOURS[index]
        if rng.random() < 0.5:
            return np.broadcast_to(first, (self.size, self.size, 3)).copy(), Background(index, None)
        # linear gradient towards a second, different background colour, in a random direction
        others = [i for i in range(len(BACKGROUND_COLOURS)) if i != index]
        second_index = others[int(rng.integers(len(others)))]
        second = BACKGROUND_COLOURS[second_index]
        angle = rng.uniform(0.0, 2.0 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        s = (self._grid - 0.5) @ direction / np.abs(direction).sum()  # (H, W) in [-0.5, 0.5]
        s = np.clip(s + 0.5, 0.0, 1.0)[..., None]  # 0 at one corner/edge, 1 at the opposite
        return (1.0 - s) * first + s * second, Background(index, second_index)

    def coverage(self, kind, centre, r) -> np.ndarray:
        """Fraction of each pixel a shape covers, (H, W) in [0, 1] (1-pixel antialiasing)."""
        _, sdf, scale = KINDS[kind]
        d = sdf(self._grid - centre, r * scale)  # (H, W), in units of the image side
        return np.clip(0.5 - d * self.size, 0.0, 1.0)

    def _paint(self, canvas, kind, centre, r, rng, exclude) -> int:
        """Draw one shape in a colour that stands out from the background under it."""
        coverage = self.coverage(kind, centre, r)[..., None]  # (H, W, 1)
        inside = coverage[..., 0] > 0.5
        under = canvas[inside].mean(axis=0) if inside.any() else canvas.mean(axis=(0, 1))
        distance = np.linalg.norm(SHAPE_COLOURS - under, axis=1)
        contrasting = [i for i in range(len(SHAPE_COLOURS)) if distance[i] > MIN_CONTRAST]
        # a colour no other shape has, unless every contrasting one is taken
        choices = [i for i in contrasting if i not in exclude] or contrasting
        colour = int(rng.choice(choices))
        canvas *= 1.0 - coverage
        canvas += coverage * SHAPE_COLOURS[colour]
        return colour


class DemoTrain(DemoScenes):
    """The training split of :class:`DemoScenes` (20,000 pictures by default)."""

    def __init__(self, **kwargs):
        if "split" in kwargs:
            raise ValueError("DemoTrain fixes split='train'; use DemoScenes to choose the split")
        super().__init__(split="train", **kwargs)


class DemoValidation(DemoScenes):
    """The validation split of :class:`DemoScenes` (1,000 pictures by default)."""

    def __init__(self, **kwargs):
        if "split" in kwargs:
            raise ValueError(
                "DemoValidation fixes split='validation'; use DemoScenes to choose the split"
            )
        super().__init__(split="validation", **kwargs)
