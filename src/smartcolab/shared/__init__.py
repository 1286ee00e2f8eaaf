"""What both sides share: the wire models, the error tree, and small policies.

Imports nothing of ours but itself.
"""
