"""The job agent's thread mode, for a kernel that only a Colab tab drives.

``agent`` (installed by the setup cell; answers the control cell), ``jobs`` (jobs in threads
and how they are stopped), ``execute`` (how a job's thread runs its code),
``files`` (small files through the control cell), ``watchdog`` (the separate process that
ends a kernel whose job holds the GIL; sent alone, as a script).  In a kernel this package
is made by ``boot.load``, not imported: keep this file a docstring only.
"""
