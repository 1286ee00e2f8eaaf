# A smartcolab runtime server in a container: local Docker, a cloud VM, or any container host.
#
#   docker build -t smartcolab-runtime .
#   docker run --rm -p 127.0.0.1:8765:8765 -e SMARTCOLAB_SECRET="$(openssl rand -hex 32)" \
#       -v "$PWD/workspace:/workspace" smartcolab-runtime
#
# The server and every job run as uid 1000 ("runner"). The entrypoint starts as root only
# to hand an empty bind-mounted /workspace (Docker creates a missing host directory
# root-owned) to that user, then drops to it; with --user UID:GID it runs as given.
#
# GPUs: add --gpus all (needs the NVIDIA Container Toolkit on the host). See docs/platforms.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/runner \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SMARTCOLAB_IN_DOCKER=1

WORKDIR /opt/smartcolab
COPY pyproject.toml README.md ./
COPY src ./src
COPY docker/entrypoint.sh /usr/local/bin/smartcolab-entrypoint
RUN pip install ".[ngrok]" \
    && useradd --create-home --uid 1000 runner \
    && mkdir -p /workspace \
    && chown runner:runner /workspace

# Code from the MCP client runs as the unprivileged runner (uid 1000), in /workspace (mount
# a volume): docker/entrypoint.sh drops to it after fixing an empty mount's owner.
WORKDIR /workspace
VOLUME ["/workspace"]
EXPOSE 8765

# Plain HTTP only: with --tls-cert/--tls-key, run with --no-healthcheck or override it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/health', timeout=4)"]

# The secret comes from $SMARTCOLAB_SECRET (or is generated and printed once: docker logs).
ENTRYPOINT ["smartcolab-entrypoint", "smartcolab", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8765", "--root", "/workspace", "--persist-dir", "/workspace/.saved"]
