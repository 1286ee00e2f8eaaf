"""Files under the runtime's roots: confinement, listing, transfers, archives.
"""
