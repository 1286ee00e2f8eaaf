"""The ``colab`` kind: runtimes assigned by Colab's service, driven as a Jupyter Server.

``backend`` (one assignment and the Jupyter backend on its proxy), ``service`` (sign-in
and assignment, through the official package in a child process), ``official`` (the only
module that touches ``google-colab-cli``; run as a script).
"""
