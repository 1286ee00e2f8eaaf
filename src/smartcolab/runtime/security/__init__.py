"""Who may call the runtime and how much: auth, limits, client addresses, audit, guard.
"""
