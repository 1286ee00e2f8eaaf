"""The HTTP API: routers, the app factory, error rendering, the OpenAPI document.
"""
