"""A job's output made readable, the same on both sides of the wire.

``flow`` (stdout, stderr and displays in the order they happened), ``display`` (Jupyter
MIME bundles as text and images a model can use), ``terminal`` (text as a terminal shows
it: carriage returns, backspaces and ANSI codes applied).
"""
