"""The runtime server: runs where the compute is, executes code in Jupyter kernels."""
