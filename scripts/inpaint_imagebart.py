"""Edit images with a chain of ImageBART scales in the browser: inpainting, completion, outpainting.

    streamlit run scripts/inpaint_imagebart.py configs/sampling/demo.yaml

Pick a validation example of the chain's dataset (the demo's DemoScenes need no files) or upload
a picture; pick a mask preset, paint the region to generate with a brush, or upload a mask
(white = keep, black = generate); set top-k,
temperature and chain length per scale (sampling order, scale T first), batch size, runs and seed.
With a class-conditional chain, the class label steers what is generated in the masked region
(more strongly with a guidance scale > 1, for chains trained with cond_drop_prob); with a
text-conditional chain, a caption box says what the whole edited image should show.
Each run shows original | masked input | samples. Run i uses the generator seed
``batch_seed(seed, i)``; see ``imagebart.sampling.editing`` for the procedure.
"""

import time

import streamlit as st
import torch
from PIL import Image

from imagebart.apps import widgets
from imagebart.apps.controls import fingerprint, runs_seeds
from imagebart.apps.display import enlarge, frame, grid_array, mask_array, png_bytes
from imagebart.apps.examples import class_names, example_image, example_label
from imagebart.apps.uploads import (
    IMAGE_TYPES,
    UploadError,
    check_mask,
    mask_from_drawing,
    read_image_upload,
    read_mask_upload,
)
from imagebart.images import to_uint8
from imagebart.sampling.batch import batch_seed
from imagebart.sampling.editing import default_chain_lengths, edit, paste_back
from imagebart.sampling.masks import grey_out, preset_mask

RESULT_KEY = "inpaint_result"
DRAW = "draw"
CANVAS_SIDE = 256  # pixels of the drawing canvas (the image is shown upscaled under it)
MASKS = {  # label -> preset name (None: upload)
    "complete the lower half (keep the upper half)": "upper_half",
    "complete the upper half (keep the lower half; the original app's 'upper-half completion')": "lower_half",
    "inpaint a centre window": "centre",
    "outpaint (keep a centre window)": "outpaint",
    "draw the region to generate with a brush": DRAW,
    "upload a mask": None,
}
WINDOW_DEFAULT = {"centre": 4, "outpaint": 2}  # window side = image side // this, as in the original app


# inputs


def show_notes(prepared) -> None:
    for message in prepared.messages("warning"):
        st.warning(message)
    for message in prepared.messages("info"):
        st.info(message)


def choose_image(examples, size: int):
    """(1, 3, size, size) in [-1, 1] from a dataset example or an upload; None (with a message) otherwise."""
    sources = (["dataset example"] if examples.dataset is not None else []) + ["upload an image"]
    if examples.dataset is None:
        st.info(f"No dataset examples ({examples.source}: {examples.reason}); upload an image instead.")
    source = st.radio("Image", sources, key="image_source", horizontal=True)
    if source == "dataset example":
        index = st.number_input(f"Validation example (0..{len(examples) - 1})", min_value=0,
                                max_value=len(examples) - 1, value=0, step=1, key="example_index")
        label = example_label(examples, int(index))
        if label:
            st.caption(label)
        return example_image(examples, int(index), size)
    # any file type: a wrong one gets our message (the widget's own refusal would leave a red chip behind)
    upload = st.file_uploader(f"Image to edit ({', '.join(IMAGE_TYPES)})", key="image_upload")
    if upload is None:
        st.info(f"Upload a picture; it is centre-cropped and resized to {size}x{size}.")
        return None
    try:
        prepared = read_image_upload(upload.getvalue(), size, name=f"'{upload.name}'")
    except UploadError as err:
        st.error(str(err))
        return None
    show_notes(prepared)
    return prepared.value


def draw_mask(image, size: int):
    """(size, size) 0/1 from a brush drawing on the image (painted = generate); None (with a message) otherwise."""
    from streamlit_drawable_canvas import st_canvas  # a component: it registers inside a running app only

    if image is None:
        st.info("Choose an image first, then paint over it.")
        return None
    width = st.slider("Brush width (canvas pixels)", min_value=4, max_value=64, value=24, step=4, key="brush_width")
    background = Image.fromarray(to_uint8(image[0])).resize((CANVAS_SIDE, CANVAS_SIDE), Image.NEAREST)
    drawing = st_canvas(stroke_width=int(width), stroke_color="rgba(255, 0, 255, 0.6)", background_image=background,
                        height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw", return_image_data=True,
                        key="mask_canvas")
    data = drawing.image_data  # (H, W, 4) RGBA, None until the canvas has sent a drawing
    mask = None if data is None else mask_from_drawing(data, size)
    if mask is None:
        st.info("Paint over the region to generate (the canvas's toolbar undoes and clears).")
    return mask


def choose_mask(size: int, patch: int, image=None):
    """(size, size) 0/1, 1 = keep, from a preset, a brush drawing on ``image`` or an upload; None (with a
    message) otherwise."""
    label = st.selectbox("Mask", list(MASKS), key="mask_preset")
    preset = MASKS[label]
    if preset == DRAW:
        return draw_mask(image, size)
    if preset is None:
        upload = st.file_uploader(f"Mask (white = keep, black or transparent = generate; {', '.join(IMAGE_TYPES)})",
                                  key="mask_upload")
        if upload is None:
            st.info("Upload a mask image: white keeps, black is generated.")
            return None
        try:
            prepared = read_mask_upload(upload.getvalue(), size, name=f"'{upload.name}'")
        except UploadError as err:
            st.error(str(err))
            return None
        show_notes(prepared)
        return prepared.value
    window = None
    if preset in WINDOW_DEFAULT:
        default = max(patch, (size // WINDOW_DEFAULT[preset]) // patch * patch)
        window = st.slider("Window side (pixels; one token covers "
                           f"{patch}x{patch})", min_value=patch, max_value=size, value=default, step=patch,
                           key="window")
        if preset == "outpaint":
            st.caption("Outpainting may need longer chains than inpainting.")
    return preset_mask(preset, size, size, size=int(window) if window is not None else None)


def chain_length_input(chain):
    """Passes per scale in sampling order; defaults as in the original app."""
    st.sidebar.markdown("Chain length per scale (re-noise and repeat a scale n-1 times)")
    defaults = default_chain_lengths(chain.models[0].redraw_prob, chain.n_scales)
    columns = st.sidebar.columns(chain.n_scales)
    values = []
    for column, t, default in zip(columns, range(chain.n_scales, 0, -1), defaults):
        values.append(int(column.number_input(f"t={t}", min_value=1, max_value=100, value=int(default), step=1,
                                              key=f"chain_length_{t}")))
    return values


def sidebar_settings(chain, names):
    side = st.sidebar
    side.header("Sampling")
    top_k = widgets.top_k_input(side, chain)
    temperature = widgets.temperature_input(side, chain)
    guidance_scale = widgets.guidance_input(side, chain)
    chain_length = chain_length_input(chain)
    side.header("Batch")
    n_runs = side.number_input("Number of runs", min_value=1, max_value=100, value=1, step=1, key="n_runs")
    batch_size = side.number_input("Samples per run", min_value=1, max_value=32, value=4, step=1, key="batch_size")
    seed = side.number_input("Seed", min_value=0, value=0, step=1, key="seed")
    if chain.is_conditional:
        side.caption("Class-conditional chain: the label guides what fills the masked region.")
    label = widgets.class_label_input(side, chain, names)
    caption = widgets.caption_input(side, chain)
    paste = side.checkbox("Paste the original back outside the edit", value=True, key="paste_back",
                          help="The VQGAN's decode softens kept regions; this keeps your pixels there (feathered seam).")
    return dict(top_k=top_k, temperature=temperature, guidance_scale=guidance_scale, chain_length=chain_length,
                n_runs=int(n_runs),
                batch_size=int(batch_size), seed=int(seed), class_label=label, caption=caption,
                paste_back=bool(paste))


# editing


def run_edits(chain, image, mask, settings) -> dict:
    """Every run: original | masked | samples rows, timed, with one progress bar."""
    torch.manual_seed(settings["seed"])  # the first stage draws codes missing from its remap list at random
    seeds = runs_seeds(settings["seed"], settings["n_runs"], batch_seed)
    b = settings["batch_size"]
    masked = grey_out(image, mask)  # (1, 3, H, W)
    bar = widgets.ProgressBar(len(seeds), chain.n_scales)
    start = time.time()
    rows, labels = [], []
    for run, seed in enumerate(seeds):
        bar.start_run(run)
        result = edit(chain, image.expand(b, -1, -1, -1), mask, top_k=settings["top_k"],
                      temperature=settings["temperature"], chain_length=settings["chain_length"],
                      class_label=settings["class_label"], generator=chain.make_generator(seed), progress=bar,
                      guidance_scale=settings["guidance_scale"], caption=settings["caption"])
        samples = result.images.cpu()
        if settings["paste_back"]:  # the user's pixels where the mask keeps them
            samples = paste_back(image, samples, mask)
        rows.append(torch.cat((image, masked, samples)))  # (B+2, 3, H, W)
        if result.class_label is not None:
            labels.extend(result.class_label.tolist())
    seconds = time.time() - start
    bar.finish(seconds)
    return dict(rows=rows, labels=labels, seconds=seconds, settings=settings)


def show_result(result: dict, current) -> None:
    """The runs, marked as coming from earlier inputs when ``current`` (the inputs' fingerprint) differs."""
    stale = widgets.stale_notice(result, current, "the image, the mask or the settings")
    rows = result["rows"]
    side = rows[0].shape[-1]
    n = rows[0].shape[0]
    for run, row in enumerate(rows):
        st.image(enlarge(grid_array(row, nrow=n), side),
                 caption=f"{'earlier inputs, ' if stale else ''}run {run + 1}: original | masked input | "
                         f"{n - 2} samples")
    grid = grid_array(torch.cat(rows), nrow=n)
    st.download_button("Download all runs (PNG)", data=png_bytes(grid), file_name="imagebart_inpainting.png",
                       mime="image/png", key="download_grid")
    labels = f"; class labels {result['labels']}" if result["labels"] else ""
    st.caption(f"{len(rows)} run(s) in {result['seconds']:.1f} s{labels}; settings: {result['settings']}")


def main() -> None:
    st.set_page_config(page_title="ImageBART editing", layout="wide")
    st.title("ImageBART: inpainting, completion, outpainting")
    path = widgets.config_path_input(__file__)
    device = widgets.device_input()
    widgets.threads_input(__file__)
    chain = widgets.chain_or_stop(path, device, "scripts/inpaint_imagebart.py")
    st.caption(f"`{path}`: {widgets.chain_summary(chain)}")
    examples = widgets.cached_examples(path, widgets.config_mtime(path))
    settings = sidebar_settings(chain, class_names(examples, chain.n_classes))

    size = chain.first_stage.encoder.resolution
    patch = max(1, size // chain.latent_shape[0])
    left, right = st.columns(2)
    with left:
        image = choose_image(examples, size)
    with right:
        mask = choose_mask(size, patch, image)
        check = None
        if mask is not None:
            check = check_mask(mask, chain.latent_shape)
            if check.problem:
                st.warning(f"Mask: {check.problem}.")
            elif check.note:
                st.info(f"Mask: {check.note}.")
            st.caption(f"{check.edit_tokens} of {check.total_tokens} tokens are generated")

    if image is not None and mask is not None:
        pictures = [to_uint8(image[0]), mask_array(mask), to_uint8(grey_out(image, mask)[0])]
        st.image([frame(enlarge(picture, size)) for picture in pictures],
                 caption=["original", "mask (white = keep)", "masked input"])
    problems = []
    if image is None:
        problems.append("an image")
    if mask is None or (check is not None and not check.ok):
        problems.append("a mask with something to edit")
    if any(settings[name] is None for name in ("top_k", "temperature", "guidance_scale")):
        problems.append("valid top-k, temperature and guidance schedules")
    if chain.is_text_conditional and settings["caption"] is None:
        problems.append("a caption")
    if problems:
        st.info("To sample, choose " + " and ".join(problems) + ".")
    current = None if problems else fingerprint(path, image, mask, settings)
    if st.button("Sample with chain", type="primary", disabled=bool(problems), key="sample"):
        try:
            st.session_state[RESULT_KEY] = {**run_edits(chain, image, mask, settings), "fingerprint": current}
        except ValueError as err:  # settings the chain refuses: say so, keep the app running
            st.error(f"Editing failed: {err}")
    if RESULT_KEY in st.session_state:
        show_result(st.session_state[RESULT_KEY], current)


main()
