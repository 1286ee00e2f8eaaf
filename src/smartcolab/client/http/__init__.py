"""The backend for our own runtime server: the HTTP client and file transfers.
"""
