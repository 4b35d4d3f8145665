"""Uploaded images and masks -> tensors the chain can edit, with notes for the page.

Every problem a user can cause by uploading is either fixed with a note (alpha channel flattened,
non-square picture centre-cropped, other size resized, as the datasets do) or raised as
:class:`UploadError` with a message for the page: nothing here may take the app down.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from imagebart.data.base import SIXTEEN_BIT_MODES, preprocess_image, to_rgb
from imagebart.images import IMAGE_SUFFIXES, declares_alpha
from imagebart.sampling.masks import latent_mask, mask_from_image

IMAGE_TYPES = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # st.file_uploader's form: no dot
FLATTEN_ONTO = (255, 255, 255)  # transparent pixels become white
MAX_PIXELS = 64_000_000  # refuse bigger uploads instead of decoding them


class UploadError(ValueError):
    """An upload that cannot be used; the message says why, for the page."""


@dataclass
class Prepared:
    """A checked upload: ``value`` (image (1, 3, H, W) in [-1, 1] or mask (H, W) 0/1) and notes.

    ``notes``: (level, message) pairs, level "warning" for changes to the picture's content
    (transparency flattened, cropped) and "info" for a plain resize.
    """

    value: torch.Tensor
    notes: list = field(default_factory=list)

    def messages(self, level: str) -> list:
        return [message for lvl, message in self.notes if lvl == level]


# reading


def open_upload(data: bytes, name: str = "upload") -> Image.Image:
    """Decode the bytes of an uploaded file with PIL, or raise :class:`UploadError`."""
    if data is None or len(data) == 0:
        raise UploadError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise UploadError(f"{name} is {image.width}x{image.height} pixels; the limit is {MAX_PIXELS:,}")
        image.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadError(f"{name} is too large to decode ({err}); the limit is {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:  # PIL's message names only its in-memory buffer
        raise UploadError(f"{name} is not an image that can be read; upload one of {', '.join(IMAGE_TYPES)}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UploadError(f"{name} is not an image that can be read ({', '.join(IMAGE_TYPES)}): "
                          f"{str(err) or type(err).__name__}") from None
    if image.width < 1 or image.height < 1:
        raise UploadError(f"{name} has no pixels ({image.width}x{image.height})")
    return image


def has_alpha(image: Image.Image) -> bool:
    """Whether any pixel is (partly) transparent: an alpha channel that is opaque everywhere changes nothing."""
    return declares_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] < 255


def flatten_alpha(image: Image.Image) -> Image.Image:
    """RGB with transparent pixels laid over white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, FLATTEN_ONTO + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


# images


def prepare_image(image: Image.Image, size: int, name: str = "image") -> Prepared:
    """Any PIL image -> (1, 3, size, size) in [-1, 1], noting every change made on the way."""
    notes = []
    if has_alpha(image):
        notes.append(("warning", f"{name} has transparent pixels: they were flattened onto white."))
        image = flatten_alpha(image)
    elif declares_alpha(image):
        image = image.convert("RGBA").convert("RGB")  # an opaque alpha channel: dropped, nothing to say
    elif image.mode != "RGB":
        if image.mode in SIXTEEN_BIT_MODES:
            notes.append(("info", f"{name} has 16 bits per pixel: scaled to 8 bits."))
        image = to_rgb(image)  # 16-bit greys scaled, not clipped to white
    w, h = image.size
    if w != h:
        side = min(w, h)
        notes.append(("warning", f"{name} is {w}x{h}, not square: the centred {side}x{side} window is used."))
    else:
        side = w
    if side != size:
        notes.append(("info", f"{name} was resized from {side}x{side} to {size}x{size}, the chain's resolution."))
    array = preprocess_image(image, size)  # (H, W, 3) in [-1, 1]: centre crop + bicubic resize
    return Prepared(torch.from_numpy(array).permute(2, 0, 1)[None].contiguous(), notes)


def read_image_upload(data: bytes, size: int, name: str = "uploaded image") -> Prepared:
    """The bytes of an uploaded picture -> (1, 3, size, size) in [-1, 1] and notes."""
    return prepare_image(open_upload(data, name), size, name)


# masks


def read_mask_upload(data: bytes, size: int, name: str = "uploaded mask") -> Prepared:
    """The bytes of an uploaded mask (white = keep, black or transparent = edit) -> (size, size) 0/1."""
    image = open_upload(data, name)
    notes = []
    if image.size != (size, size):
        notes.append(("info", f"{name} ({image.width}x{image.height}) was centre-cropped and resized to "
                             f"{size}x{size} and binarised (white = keep)."))
    try:
        mask = mask_from_image(image, (size, size))
    except (ValueError, TypeError) as err:
        raise UploadError(f"{name}: {err}") from None
    return Prepared(mask, notes)


def mask_from_drawing(rgba, size: int) -> Optional[torch.Tensor]:
    """A brush drawing (H, W, 4) uint8 RGBA from the canvas, painted = generate, -> (size, size) 0/1 mask,
    1 = keep; a pixel is generated where at least half of its area is painted. None when nothing is painted."""
    import numpy as np

    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise UploadError(f"expected an (H, W, 4) RGBA drawing, got shape {rgba.shape}")
    painted = torch.from_numpy((rgba[..., 3] > 0).astype(np.float32))[None, None]  # (1, 1, H, W)
    if not bool(painted.any()):
        return None
    coverage = torch.nn.functional.interpolate(painted, size=(size, size), mode="area")[0, 0]  # (size, size)
    return (coverage < 0.5).float()


@dataclass
class MaskCheck:
    """How a mask lands on the token grid, and whether an edit makes sense with it."""

    edit_tokens: int
    total_tokens: int
    problem: Optional[str] = None  # set: do not run
    note: Optional[str] = None  # set: runs, but worth saying

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_mask(mask: torch.Tensor, latent_shape: Sequence[int]) -> MaskCheck:
    """Count the tokens the mask (H, W), 1 = keep, leaves to generate once resized to the grid."""
    keep = latent_mask(mask, latent_shape)  # (h, w)
    total = keep.numel()
    edit = int(total - keep.sum().item())
    if edit == 0:
        problem = ("the mask keeps every token: there is nothing to edit" if bool((mask > 0.5).all()) else
                   "the masked-out region is smaller than one token of the latent grid, so it keeps every "
                   "token: there is nothing to edit (make the region larger)")
        return MaskCheck(edit, total, problem=problem)
    if edit == total:
        return MaskCheck(edit, total,
                         note="the mask keeps nothing: every token is generated, as in plain sampling")
    return MaskCheck(edit, total)
