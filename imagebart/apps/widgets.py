"""The streamlit layer shared by both apps: config path, cached chain, schedule and class pickers, progress.

Every control that can hold a bad value reports it with ``st.error`` next to the control and
returns None; the app then disables its run button, so bad input never raises.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

import streamlit as st
import torch

from imagebart.apps.controls import (
    CONFIG_ENV, SCHEDULE_MODES, build_schedule, class_label_value, config_path_from, format_values, threads_from,
)
from imagebart.apps.examples import validation_examples
from imagebart.sampling.chain import ImageBARTChain

CONFIG_KEY = "sampling_config"  # session-state key of the config path (tests may set it)
THREADS_KEY = "threads"


# the chain


def config_path_input(script: str) -> Optional[str]:
    """The sampling config: a sidebar field that starts with the command line's (or the env var's) path."""
    if CONFIG_KEY not in st.session_state:
        st.session_state[CONFIG_KEY] = config_path_from(sys.argv, script) or ""
    path = st.sidebar.text_input("Sampling config", key=CONFIG_KEY,
                                 help="YAML with checkpoints: and configs: (scale 1 first); paths relative to "
                                      "the working directory")
    return path.strip() or None


def device_input() -> str:
    options = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    return st.sidebar.selectbox("Device", options, key="device")


def threads_input(script: str) -> int:
    """torch's CPU threads, set for every run: ``--threads`` on the command line, else torch's default (the
    physical cores). Beside a training run on the same cores, give each about half: over-subscribed cores
    make sampling many times slower."""
    if THREADS_KEY not in st.session_state:
        try:
            st.session_state[THREADS_KEY] = threads_from(sys.argv, script) or torch.get_num_threads()
        except ValueError as err:
            st.sidebar.error(f"{err}; using torch's default")
            st.session_state[THREADS_KEY] = torch.get_num_threads()
    threads = int(st.sidebar.number_input("CPU threads", min_value=1, max_value=max(1, os.cpu_count() or 1) * 2,
                                          step=1, key=THREADS_KEY,
                                          help="beside a training run on the same cores, give each about half"))
    torch.set_num_threads(threads)
    return threads


@st.cache_resource(show_spinner="Loading the ImageBART chain ...", max_entries=2)
def _load_chain(path: str, device: str, mtime: float) -> ImageBARTChain:
    del mtime  # part of the cache key only: an edited config is loaded again
    return ImageBARTChain.from_sampling_config(path, device=device)


@st.cache_resource(show_spinner="Loading the dataset examples ...", max_entries=2)
def cached_examples(path: str, mtime: float):
    del mtime
    return validation_examples(path)


def config_mtime(path: str) -> float:
    return os.stat(path).st_mtime


def chain_or_stop(path: Optional[str], device: str, script: str) -> ImageBARTChain:
    """Load (once per path and device) or show why not and stop this run of the script."""
    if not path:
        st.error(f"No sampling config given. Run `streamlit run {script} <sampling config>`, set "
                 f"`{CONFIG_ENV}`, or enter its path in the sidebar.")
        st.stop()
    if not os.path.isfile(path):
        st.error(f"Sampling config not found: `{path}` (working directory `{os.getcwd()}`).")
        st.stop()
    try:
        return _load_chain(path, device, config_mtime(path))
    except Exception as err:  # the page is the only place to tell the user; keep the app alive
        st.error(f"Cannot load the chain from `{path}`: {err}")
        st.stop()


def chain_summary(chain: ImageBARTChain) -> str:
    h, w = chain.latent_shape
    side = chain.first_stage.encoder.resolution
    kind = f"class-conditional ({chain.n_classes} classes)" if chain.is_conditional else \
        "text-conditional" if chain.is_text_conditional else "unconditional"
    if chain.supports_guidance:
        kind += ", with guidance"
    return (f"{chain.n_scales} scales, {kind}, {side}x{side} images, {h}x{w} = {h * w} tokens, "
            f"K = {chain.num_codes} codes, on {chain.device}")


# schedules


def schedule_input(container, name: str, key: str, n_scales: int, integer: bool, defaults: Sequence,
                   linear_end, check: Callable[[list], list]) -> Optional[list]:
    """Radio (per scale / constant / linear) plus its fields; the checked list, or None after st.error."""
    mode = container.radio(f"{name} schedule", SCHEDULE_MODES, key=f"{key}_mode", horizontal=True)
    fields = {}
    if mode == "per scale":
        fields["text"] = container.text_input(
            f"{name}, {n_scales} comma-separated values in sampling order (scale {n_scales} first)",
            value=format_values(defaults), key=f"{key}_text")
    elif mode == "constant":
        fields["constant"] = _number(container, name, defaults[0], integer, f"{key}_constant")
    else:
        fields["start"] = _number(container, f"{name} at scale {n_scales} (first)", defaults[0], integer,
                                  f"{key}_start")
        fields["end"] = _number(container, f"{name} at scale 1 (last)", linear_end, integer, f"{key}_end")
    try:
        values = check(build_schedule(mode, n_scales, integer, name, **fields))
    except ValueError as err:
        container.error(str(err))
        return None
    container.caption(f"{name} per scale (t={n_scales}..1): {format_values(values)}")
    return values


def _number(container, label: str, value, integer: bool, key: str):
    if integer:
        return container.number_input(label, value=int(value), step=1, key=key)
    return container.number_input(label, value=float(value), step=0.05, format="%.3f", key=key)


def top_k_input(container, chain: ImageBARTChain) -> Optional[list]:
    """Top-k per scale; starts from each scale's config value (capped at K), as the CLI does."""
    defaults = chain.top_k_schedule(None)
    return schedule_input(container, "top-k", "top_k", chain.n_scales, True, defaults,
                          max(1, chain.num_codes // 4), chain.top_k_schedule)


def temperature_input(container, chain: ImageBARTChain) -> Optional[list]:
    return schedule_input(container, "temperature", "temperature", chain.n_scales, False,
                          [1.0] * chain.n_scales, 0.1, chain.temperature_schedule)


def guidance_input(container, chain: ImageBARTChain) -> Optional[list]:
    """Classifier-free guidance scale per scale (1 = plain conditional sampling); fixed at 1 where the
    chain has no unconditional branch."""
    if not chain.supports_guidance:
        if chain.is_conditional:
            container.caption("guidance: this chain was trained without cond_drop_prob, so it samples "
                              "with the class alone (guidance scale 1)")
        return [1.0] * chain.n_scales
    return schedule_input(container, "guidance scale", "guidance_scale", chain.n_scales, False,
                          [1.0] * chain.n_scales, 1.0, chain.guidance_schedule)


DEFAULT_CAPTION = "a large red circle on a navy background"


def caption_input(container, chain: ImageBARTChain, default: Optional[str] = None) -> Optional[str]:
    """None for chains without captions; else the caption text (None after st.error when empty)."""
    if not chain.is_text_conditional:
        return None
    text = container.text_area("Caption", value=default or DEFAULT_CAPTION, key="caption", height=80,
                               help="what the images should show; words the tokenizer never saw become [UNK]")
    if not text.strip():
        container.error("Enter a caption: this chain is text-conditional.")
        return None
    return " ".join(text.split())


def class_label_input(container, chain: ImageBARTChain, names: Optional[Sequence[str]] = None):
    """None for unconditional chains; else an int label or "random" (one draw per image)."""
    if not chain.is_conditional:
        return None
    mode = container.radio("Class", ["label", "random"], key="class_mode", horizontal=True,
                           help="one label for the whole batch, or a random label per image")
    if mode == "random":
        return class_label_value("random")
    label = container.selectbox("Class label", list(range(chain.n_classes)), key="class_label",
                                format_func=lambda i: f"{i}: {names[i]}" if names else str(i))
    return class_label_value("label", label)


# results


def stale_notice(result: dict, current: Optional[str], what: str) -> bool:
    """Warn when ``result`` (holding the ``fingerprint`` of its inputs) came from other inputs than the
    ``current`` ones (None: the current inputs are incomplete or invalid); returns whether it is stale."""
    stale = result.get("fingerprint") != current
    if stale:
        st.warning(f"The results below come from earlier inputs: {what} changed since. Sample again to update them.",
                   icon="⚠️")
    return stale


# progress


class ProgressBar:
    """``progress(t, step, steps)`` for the chain, drawn as one bar over all runs and scales."""

    def __init__(self, n_runs: int, n_scales: int, container=st, what: str = "run"):
        self.n_runs, self.n_scales, self.what = n_runs, n_scales, what
        self.run = 0
        self.bar = container.progress(0.0, text="starting ...")

    def start_run(self, run: int) -> None:
        self.run = run

    def __call__(self, t: int, step: int, steps: int) -> None:
        every = max(1, steps // 16)  # redraw about 16 times per scale, not once per token
        if step != steps and step % every:
            return
        done = self.run * self.n_scales + (self.n_scales - t) + step / max(1, steps)
        text = (f"{self.what} {self.run + 1}/{self.n_runs}, scale t={t} ({self.n_scales - t + 1} of "
                f"{self.n_scales}): token {step}/{steps}")
        self.bar.progress(min(1.0, done / (self.n_runs * self.n_scales)), text=text)

    def finish(self, seconds: float) -> None:
        self.bar.progress(1.0, text=f"done in {seconds:.1f} s")
