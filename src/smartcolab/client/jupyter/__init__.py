"""The backend for a Jupyter Server (JupyterLab, JupyterHub, Colab's runtime proxy).
"""
