"""Helpers shared by the test tiers: real processes, proxies, fixtures."""
