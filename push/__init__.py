"""The mobile-credential (行動自然人憑證, TW FidO) backend."""
