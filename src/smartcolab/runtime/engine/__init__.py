"""The execution engine: kernels, sessions, the job queue, the job store, job output.
"""
