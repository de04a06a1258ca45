"""自然人憑證 (MOICA smart card) verification core: signature, path, revocation, registrations.

No aiohttp here; the login method (``server.methods.card``) supplies the HTTP fetcher and the
session store.
"""
