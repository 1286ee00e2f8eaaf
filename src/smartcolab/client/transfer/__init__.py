"""Downloads that survive drops, for every backend that can send a byte range.

``source`` (what a backend supplies: open a byte range; what a download hands back),
``resumable`` (the one-stream download that resumes from its ``.part`` file),
``spans`` (the parallel download's spans: cut, resumed, checked), ``span_streams`` (the
streams and the whole-file hash that fill a ``.part`` in parallel), ``parallel`` (a
parallel download driven from the event loop), ``publish`` (verified, then published
under its name, as one step).
"""
