"""The bodies of the ``smartcolab`` commands for people, one module per command or group.

``jobs`` (exec, jobs, vars, cleanup), ``files`` (ls, get, put), ``runtimes`` (probe,
runtimes), ``doctor``, ``demo``, ``bundle``, ``local`` and ``tab`` (with their own typer
groups).  Flags are read in ``cli/app.py`` and ``cli/user.py``; what the commands share is
``cli/common.py``.
"""
