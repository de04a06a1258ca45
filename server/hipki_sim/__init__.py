"""HiPKI local component simulator: the popup protocol on loopback, with a software token."""
