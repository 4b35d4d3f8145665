"""Shared pieces of the two streamlit apps (``scripts/sample_imagebart.py``, ``scripts/inpaint_imagebart.py``).

``controls``, ``uploads``, ``examples`` and ``display`` hold the logic and never import
streamlit, so they are tested directly; ``widgets`` is the thin streamlit layer on top.
"""
