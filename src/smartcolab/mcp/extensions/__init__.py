"""MCP beyond tools: tasks for long calls (both wire generations), log notifications, and
resources for job outputs and saved files."""
