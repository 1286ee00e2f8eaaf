"""The machine the runtime runs on: probe, resources, sampling, tunnels.
"""
