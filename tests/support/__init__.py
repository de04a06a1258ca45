"""Helpers that tests start: real servers and processes."""
