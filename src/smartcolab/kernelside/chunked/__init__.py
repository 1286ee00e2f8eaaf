"""Kernel-side code of chunked operations (``mcp/chunked``).

``report`` (the line a batch prints about itself, installed once per kernel) and
``dask_task`` (the function a Dask worker runs for one batch, shipped by value).  Kernels
and workers receive these modules' code, never this file: keep it a docstring only.
"""
