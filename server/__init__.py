"""ebas-login: the login service of 全國主計網 (eBAS)."""
