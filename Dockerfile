# A smartcolab runtime server in a container: local Docker, a cloud VM, or any container host.
#
#   docker build -t smartcolab-runtime .
#   docker run --rm -p 127.0.0.1:8765:8765 -e SMARTCOLAB_SECRET="$(openssl rand -hex 32)" \
#       -v "$PWD/workspace:/workspace" smartcolab-runtime
#
# GPUs: add --gpus all (needs the NVIDIA Container Toolkit on the host). See docs/platforms.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SMARTCOLAB_IN_DOCKER=1

WORKDIR /opt/smartcolab
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[ngrok]" \
    && useradd --create-home --uid 1000 runner \
    && mkdir -p /workspace \
    && chown runner:runner /workspace

# Code from the MCP client runs as this unprivileged user, in /workspace (mount a volume).
USER runner
WORKDIR /workspace
VOLUME ["/workspace"]
EXPOSE 8765

# Plain HTTP only: with --tls-cert/--tls-key, run with --no-healthcheck or override it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/health', timeout=4)"]

# The secret comes from $SMARTCOLAB_SECRET (or is generated and printed once: docker logs).
ENTRYPOINT ["smartcolab", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8765", "--root", "/workspace", "--persist-dir", "/workspace/.saved"]
