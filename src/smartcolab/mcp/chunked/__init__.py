"""Chunked operations: loops run in batches with local checkpoints.
"""
