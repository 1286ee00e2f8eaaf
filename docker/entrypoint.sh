#!/bin/sh
# The container starts as root only to make the bind-mounted workspace usable by the
# unprivileged user that runs the server and every job: Docker creates a missing host
# directory (-v "$PWD/workspace:/workspace") owned by root, where uid 1000 cannot write.
# An empty, foreign-owned workspace is handed to that user; a non-empty one is left
# alone and, if that user cannot write to it, the container stops saying how to fix it.
# Started with --user, the container never was root: it runs the command as is.
set -eu
WORKSPACE=${SMARTCOLAB_WORKSPACE:-/workspace}
RUNNER_UID=${SMARTCOLAB_RUNNER_UID:-1000}

if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi
as_runner() { setpriv --reuid="$RUNNER_UID" --regid="$RUNNER_UID" --clear-groups "$@"; }
if [ "$(stat -c %u "$WORKSPACE")" != "$RUNNER_UID" ]; then
  if [ -z "$(ls -A "$WORKSPACE")" ]; then
    chown "$RUNNER_UID:$RUNNER_UID" "$WORKSPACE"
  elif ! as_runner test -w "$WORKSPACE"; then
    echo "error: $WORKSPACE (your -v mount) is not empty and uid $RUNNER_UID cannot write to it." >&2
    echo "Fix: sudo chown -R $RUNNER_UID:$RUNNER_UID <the host directory>, or run the container" >&2
    echo "as yourself: docker run --user \"\$(id -u):\$(id -g)\" ..." >&2
    exit 2
  fi
fi
# exec twice (setpriv execs the command): the server is PID 1 and gets `docker stop`'s SIGTERM.
exec setpriv --reuid="$RUNNER_UID" --regid="$RUNNER_UID" --clear-groups "$@"
