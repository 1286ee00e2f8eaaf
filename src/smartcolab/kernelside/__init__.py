"""Code that runs inside Jupyter kernels, standard library only.

These are real modules (linted, typed, tested in process); a runtime or a bridge sends
their source to a kernel. They import nothing of ours.
"""
