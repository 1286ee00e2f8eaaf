"""The names of every environment variable smartcolab reads or sets, in one place.

Only the CLI, the notebook helper and the embedded runtime's launcher read the
environment (the runtime library and the MCP tools are given plain values); they
take the names from here, so a rename is one line and ``grep`` finds every reader.
"""

from __future__ import annotations

# The runtime server's shared secret (``smartcolab serve``, the notebook helper, and the
# bridge handing it to the embedded runtime it starts).  Kernels must not inherit it.
SECRET = "SMARTCOLAB_SECRET"

# The bridge: the runtime named "colab", a Jupyter Server named "jupyter", more runtimes.
COLAB_URL = "COLAB_URL"
COLAB_TOKEN = "COLAB_TOKEN"
JUPYTER_URL = "JUPYTER_URL"
JUPYTER_TOKEN = "JUPYTER_TOKEN"
RUNTIMES_FILE = "SMARTCOLAB_RUNTIMES"
# The bridge's local state (journal, checkpoints, embedded runtime) and its downloads.
CHECKPOINT_DIR = "CHECKPOINT_DIR"
LOCAL_SAVE_DIR = "LOCAL_SAVE_DIR"
# The bearer token of the bridge's Streamable HTTP transport.
MCP_TOKEN = "SMARTCOLAB_MCP_TOKEN"

# Tunnels: ngrok's auth token and reserved domain; cloudflared's own variable for a named
# tunnel's token, and the hostname routed to it.
NGROK_TOKEN = "NGROK_AUTHTOKEN"
NGROK_DOMAIN = "NGROK_DOMAIN"
CLOUDFLARED_TOKEN = "TUNNEL_TOKEN"
CLOUDFLARED_HOSTNAME = "CLOUDFLARED_HOSTNAME"

# A colab-tab runtime's link is shown, not opened in a browser, when this is set.
NO_BROWSER = "SMARTCOLAB_NO_BROWSER"

# Platform hints for the probe, where detection from files cannot tell.
IN_DOCKER = "SMARTCOLAB_IN_DOCKER"
ON_VM = "SMARTCOLAB_VM"

# The local runtime daemon (client/local/, cli/commands/local.py): the kernels' Python, this
# client's label (its own session), the daemon's idle stop in minutes.
PYTHON = "SMARTCOLAB_PYTHON"
CLIENT = "SMARTCOLAB_CLIENT"
IDLE_MINUTES = "SMARTCOLAB_IDLE_MINUTES"
# Other tokens the local daemon's environment (hence its kernels') never carries.
JUPYTERHUB_TOKEN = "JUPYTERHUB_API_TOKEN"
# The colab kind: a Python 3.12+ that has google-colab-cli, when the bridge is older.
COLAB_PYTHON = "SMARTCOLAB_COLAB_PYTHON"

# The event loop of the runtime server and the bridge: "asyncio" keeps the standard one
# where uvloop is installed (shared/loop.py).
LOOP = "SMARTCOLAB_LOOP"
# The runtime server's HTTP parser: "h11" keeps the pure-Python one where httptools is
# installed (runtime/security/connections.py).
HTTP = "SMARTCOLAB_HTTP"

# "0" sends a loopback runtime's small requests through httpx2 like any other runtime's
# instead of the lean h11 lane (client/http/lane.py): for A/B measurements and as a way out.
LOOPBACK_LANE = "SMARTCOLAB_LOOPBACK_LANE"
