"""The ``colab`` kind: runtimes assigned by Colab's service, driven as a Jupyter Server.

``backend`` (the backend interface, forwarded to the Jupyter backend on the proxy),
``assignment`` (one assignment: found or made, kept alive, released), ``service`` (sign-in
and assignment, through the official package in a child process), ``official`` (the only
module that touches ``google-colab-cli``; run as a script).
"""
