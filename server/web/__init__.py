"""The HTTP layer: parses requests, calls the core, renders answers."""
