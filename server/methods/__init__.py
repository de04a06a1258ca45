"""One module per login method, all implementing ``server.methods.base.LoginMethod``."""
