"""Sample from a chain of ImageBART scales in the browser.

    streamlit run scripts/sample_imagebart.py configs/sampling/demo.yaml

Sidebar: top-k and temperature schedules (per scale, constant or linear; sampling order, scale T
first), number of runs, batch size, seed, class label for class-conditional chains (and the
classifier-free guidance schedule when the chain was trained with cond_drop_prob), a caption box for
text-conditional chains. "Sample"
runs the chain x_T -> ... -> x_0 with a progress bar per scale, shows the grid (one row per run)
and offers it as a PNG; optionally the whole chain of the first sample, x_T ... x_0.
Run i uses the generator seed ``batch_seed(seed, i)``, as batch i of ``scripts/sample.py``.
"""

import time

import streamlit as st
import torch

from imagebart.apps import widgets
from imagebart.apps.controls import fingerprint, runs_seeds
from imagebart.apps.display import enlarge, grid_array, png_bytes
from imagebart.apps.examples import class_names
from imagebart.sampling.batch import batch_seed

RESULT_KEY = "sample_result"


def sidebar_settings(chain, names):
    """Every control; None in place of a setting that holds bad input (its error is on the page)."""
    side = st.sidebar
    side.header("Sampling")
    top_k = widgets.top_k_input(side, chain)
    temperature = widgets.temperature_input(side, chain)
    guidance_scale = widgets.guidance_input(side, chain)
    side.header("Batch")
    n_runs = side.number_input("Number of runs", min_value=1, max_value=100, value=1, step=1, key="n_runs")
    batch_size = side.number_input("Batch size", min_value=1, max_value=64, value=4, step=1, key="batch_size")
    seed = side.number_input("Seed", min_value=0, value=0, step=1, key="seed")
    label = widgets.class_label_input(side, chain, names)
    caption = widgets.caption_input(side, chain)
    show_chain = side.checkbox("Show the chain x_T -> x_0 of the first sample", key="show_chain")
    return dict(top_k=top_k, temperature=temperature, guidance_scale=guidance_scale, n_runs=int(n_runs), batch_size=int(batch_size),
                seed=int(seed), class_label=label, caption=caption, show_chain=show_chain)


def sample(chain, settings) -> dict:
    """All runs, with a progress bar; the images (runs*B, 3, H, W) and, when asked, the first chain."""
    seeds = runs_seeds(settings["seed"], settings["n_runs"], batch_seed)
    bar = widgets.ProgressBar(len(seeds), chain.n_scales)
    start = time.time()
    images, labels, steps = [], [], None
    for run, seed in enumerate(seeds):
        bar.start_run(run)
        want_chain = settings["show_chain"] and run == 0
        result = chain.sample(settings["batch_size"], top_k=settings["top_k"], temperature=settings["temperature"],
                              class_label=settings["class_label"], generator=chain.make_generator(seed),
                              return_intermediates=want_chain, progress=bar,
                              guidance_scale=settings["guidance_scale"], caption=settings["caption"])
        images.append(result.images.cpu())
        if result.class_label is not None:
            labels.extend(result.class_label.tolist())
        if want_chain:
            first = torch.cat([x_t[:1] for x_t in result.intermediates])  # (T+1, L): x_T ... x_0
            steps = chain.decode(first).float().cpu()  # (T+1, 3, H, W)
    seconds = time.time() - start
    bar.finish(seconds)
    return dict(images=torch.cat(images), steps=steps, labels=labels, seconds=seconds, n_scales=chain.n_scales,
                settings={k: v for k, v in settings.items() if k != "show_chain"})


def show_result(result: dict, current) -> None:
    """The samples, marked as coming from earlier settings when ``current`` (their fingerprint) differs."""
    stale = widgets.stale_notice(result, current, "the settings")
    images = result["images"]
    side = images.shape[-1]
    batch_size = result["settings"]["batch_size"]
    grid = grid_array(images, nrow=batch_size)
    caption = f"{'earlier settings: ' if stale else ''}{len(images)} samples in {result['seconds']:.1f} s (one row per run)"
    if result["labels"]:
        caption += f"; class labels {result['labels']}"
    st.image(enlarge(grid, side), caption=caption)
    st.download_button("Download the grid (PNG)", data=png_bytes(grid), file_name="imagebart_samples.png",
                       mime="image/png", key="download_grid")
    if result["steps"] is not None:
        n = result["n_scales"]
        st.subheader("The chain of the first sample")
        st.image(enlarge(grid_array(result["steps"], nrow=n + 1), side),
                 caption="left to right: " + ", ".join(f"x_{t}" for t in range(n, -1, -1))
                 + f" (x_{n} is the uniform noise the chain starts from)")
    st.caption(f"settings: {result['settings']}")


def main() -> None:
    st.set_page_config(page_title="ImageBART sampling", layout="wide")
    st.title("ImageBART: sampling")
    path = widgets.config_path_input(__file__)
    device = widgets.device_input()
    widgets.threads_input(__file__)
    chain = widgets.chain_or_stop(path, device, "scripts/sample_imagebart.py")
    st.caption(f"`{path}`: {widgets.chain_summary(chain)}")

    names = None
    if chain.is_conditional:  # label names when the training config's dataset has them
        names = class_names(widgets.cached_examples(path, widgets.config_mtime(path)), chain.n_classes)
    settings = sidebar_settings(chain, names)
    bad = [name for name in ("top_k", "temperature", "guidance_scale") if settings[name] is None]
    if chain.is_text_conditional and settings["caption"] is None:
        bad.append("caption")
    if bad:
        st.error(f"Fix the {' and '.join(bad).replace('_', '-')} schedule in the sidebar to sample.")
    current = None if bad else fingerprint(path, {k: v for k, v in settings.items() if k != "show_chain"})
    if st.button("Sample", type="primary", disabled=bool(bad), key="sample"):
        try:
            st.session_state[RESULT_KEY] = {**sample(chain, settings), "fingerprint": current}
        except ValueError as err:  # settings the chain refuses: say so, keep the app running
            st.error(f"Sampling failed: {err}")
    if RESULT_KEY in st.session_state:
        show_result(st.session_state[RESULT_KEY], current)


main()
