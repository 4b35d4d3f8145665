"""Redraw the README's demo pictures from the shipped demo chain (run from the repository root).

    python docs/make_figures.py

Writes ``docs/demo_samples.png`` (unconditional samples, x_T -> x_0 rows for a few of them),
``docs/demo_editing.png`` (upper-half completion and centre-window inpainting: original | masked
input | samples) and, from the class-conditional chain, ``docs/demo_class_samples.png`` (one row
per class, without and with guidance) and ``docs/demo_class_editing.png`` (the centre of the same
images re-generated as each class), enlarged 4x with nearest-neighbour so the 32x32 pixels stay
visible. From the text-conditional chain: ``docs/demo_text_samples.png`` (a row per caption) and
``docs/demo_text_editing.png`` (the centre of the same images re-generated for several captions).
``docs/mask_presets.png`` shows every ``--mask`` preset on one picture (no chain needed).
``--only unconditional``, ``--only class``, ``--only text`` or ``--only masks`` redraws one figure set.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from imagebart.data.demo import DemoScenes
from imagebart.images import make_grid, to_uint8
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.editing import edit, paste_back
from imagebart.sampling.masks import grey_out, preset_mask

CONFIG = "configs/sampling/demo.yaml"
CLASS_CONFIG = "configs/sampling/demo_class.yaml"
TEXT_CONFIG = "configs/sampling/demo_text.yaml"
TEXT_CAPTIONS = ("a large red circle on a navy background", "a large yellow square on a charcoal background",
                 "a large white triangle on a dark teal background", "a large green cross on a cream background")
EDIT_CAPTIONS = ("a large red circle", "a large yellow square", "a large white triangle", "a large blue cross")
GUIDANCE = 3.0  # the class figures' guidance scale
ZOOM = 4


def save(grid: torch.Tensor, path: Path) -> None:
    image = Image.fromarray(to_uint8(grid))
    image.resize((image.width * ZOOM, image.height * ZOOM), Image.NEAREST).save(path)
    print(f"wrote {path}")


def samples_figure(chain: ImageBARTChain, out: Path) -> None:
    start = time.time()
    result = chain.sample(32, generator=chain.make_generator(0), return_intermediates=True)
    print(f"32 samples in {time.time() - start:.1f} s")
    save(make_grid(result.images, nrow=8, pad_value=1.0), out / "demo_samples.png")
    rows = [chain.decode(x[:4]) for x in result.intermediates]  # x_T, ..., x_0 for 4 samples
    chain_grid = torch.stack(rows, dim=1).flatten(0, 1)  # (4 * (T+1), 3, H, W), one row per sample
    save(make_grid(chain_grid, nrow=len(rows), pad_value=1.0), out / "demo_chain.png")


def editing_figure(chain: ImageBARTChain, out: Path, n_images: int = 4, n_samples: int = 4) -> None:
    data = DemoScenes(split="validation", size=32)
    images = torch.stack([torch.from_numpy(data[i]["image"]).permute(2, 0, 1) for i in range(n_images)])
    tiles = []
    for preset, size in (("upper_half", None), ("centre", 0.5)):
        mask = preset_mask(preset, 32, 32, size)
        for image in images:
            batch = image[None].expand(n_samples, -1, -1, -1)
            start = time.time()
            result = edit(chain, batch, mask, generator=chain.make_generator(len(tiles)))
            print(f"{preset}: {n_samples} edits in {time.time() - start:.2f} s")
            tiles += [image, grey_out(image[None], mask)[0], *result.images]
    save(make_grid(torch.stack(tiles), nrow=2 + n_samples, pad_value=1.0), out / "demo_editing.png")


def validation_images(n: int) -> torch.Tensor:
    data = DemoScenes(split="validation", size=32)
    return torch.stack([torch.from_numpy(data[i]["image"]).permute(2, 0, 1) for i in range(n)])  # (n, 3, 32, 32)


def class_samples_figure(chain: ImageBARTChain, out: Path, per_row: int = 8) -> None:
    """Rows: class 0..C-1 at guidance 1, then the same classes at GUIDANCE."""
    rows = []
    for scale in (1.0, GUIDANCE):
        for label in range(chain.n_classes):
            rows.append(chain.sample(per_row, class_label=label, guidance_scale=scale,
                                     generator=chain.make_generator(label)).images)
    save(make_grid(torch.cat(rows), nrow=per_row, pad_value=1.0), out / "demo_class_samples.png")


def class_editing_figure(chain: ImageBARTChain, out: Path, n_images: int = 4) -> None:
    """Per image: original | masked | the centre re-generated as class 0, 1, ..., C-1 (pasted back)."""
    mask = preset_mask("centre", 32, 32, 0.5)
    tiles = []
    for index, image in enumerate(validation_images(n_images)):
        batch = image[None].expand(chain.n_classes, -1, -1, -1)
        result = edit(chain, batch, mask, class_label=list(range(chain.n_classes)), guidance_scale=GUIDANCE,
                      generator=chain.make_generator(index))
        tiles += [image, grey_out(image[None], mask)[0], *paste_back(batch, result.images, mask)]
    save(make_grid(torch.stack(tiles), nrow=2 + chain.n_classes, pad_value=1.0), out / "demo_class_editing.png")


def edited_captions(index: int) -> list:
    """Validation picture ``index``'s caption with its large shape swapped for each of EDIT_CAPTIONS."""
    from imagebart.data.demo import KINDS, SHAPE_COLOUR_NAMES

    data = DemoScenes(split="validation", size=32)
    large = data.draw_scene(data.rng(index))[1][0]
    old = f"a large {SHAPE_COLOUR_NAMES[large.colour]} {KINDS[large.kind][0]}"
    return [data[index]["caption"].replace(old, new) for new in EDIT_CAPTIONS]


def text_figures(chain: ImageBARTChain, out: Path, per_row: int = 8) -> None:
    """Samples for TEXT_CAPTIONS (one row each), and the centre of validation pictures re-generated
    for the picture's own caption with its large shape replaced by each of EDIT_CAPTIONS."""
    rows = [chain.sample(per_row, caption=caption, guidance_scale=GUIDANCE, generator=chain.make_generator(i)).images
            for i, caption in enumerate(TEXT_CAPTIONS)]
    save(make_grid(torch.cat(rows), nrow=per_row, pad_value=1.0), out / "demo_text_samples.png")
    mask = preset_mask("centre", 32, 32, 0.5)
    tiles = []
    for index, image in enumerate(validation_images(4)):
        batch = image[None].expand(len(EDIT_CAPTIONS), -1, -1, -1)
        result = edit(chain, batch, mask, caption=edited_captions(index), guidance_scale=GUIDANCE,
                      generator=chain.make_generator(index))
        tiles += [image, grey_out(image[None], mask)[0], *paste_back(batch, result.images, mask)]
    save(make_grid(torch.stack(tiles), nrow=2 + len(EDIT_CAPTIONS), pad_value=1.0), out / "demo_text_editing.png")


MASK_PRESETS = ("upper_half", "lower_half", "centre:0.5", "outpaint:0.5", "centre")


def mask_presets_figure(out: Path) -> None:
    """One validation picture under every preset: the mask (white = keep) and the masked input (grey = generated)."""
    from imagebart.images import save_labelled_grid
    from imagebart.sampling.masks import parse_mask

    image = validation_images(4)[3:4]  # (1, 3, 32, 32)
    rows = {}
    for spec in MASK_PRESETS:
        mask = parse_mask(spec, tuple(image.shape[-2:]))  # (H, W), 1 = keep
        rows[spec] = torch.cat((mask.expand(1, 3, -1, -1) * 2 - 1, grey_out(image, mask)))
    save_labelled_grid(rows, out / "mask_presets.png", column_titles=["mask", "input"])
    print(f"wrote {out / 'mask_presets.png'}")


def main() -> None:
    import sys

    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    out = Path("docs")
    if only in (None, "unconditional"):
        chain = ImageBARTChain.from_sampling_config(CONFIG)
        samples_figure(chain, out)
        editing_figure(chain, out)
    if only in (None, "class"):
        chain = ImageBARTChain.from_sampling_config(CLASS_CONFIG)
        class_samples_figure(chain, out)
        class_editing_figure(chain, out)
    if only in (None, "text"):
        text_figures(ImageBARTChain.from_sampling_config(TEXT_CONFIG), out)
    if only in (None, "masks"):
        mask_presets_figure(out)


if __name__ == "__main__":
    main()
