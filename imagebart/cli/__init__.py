"""The command-line layer: argument parsing and error reporting for every ``scripts/`` command.

One module per command (``sample``, ``inpaint``, ``elbo``, ``convert``, ``train``), each with a
``main(argv)`` that tests call directly; the shared pieces live in :mod:`imagebart.cli.common`.
The rest of the package never imports from here (except the apps, which share the per-scale
value parser with the command lines), so library code stays free of argparse.
"""
