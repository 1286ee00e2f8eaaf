"""The command line: the typer app and its commands, the demo, client config snippets.
"""
