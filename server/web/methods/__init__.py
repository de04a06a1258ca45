"""HTTP routes that belong to one login method (setup_routes(app) in each)."""
