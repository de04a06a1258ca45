"""Embedded TW FidO-compatible authority: a demo and test stand-in for MOI's service.

It answers the SP API (``getSpTicket``, ``requestAthOrSignPush``, ``getAthOrSignResult``,
``checkDeviceStatus``) with the same checksums and tickets as MOI, keeps device bindings with
test certificates from a local CA, and talks to phones (the simulator CLI and page) over a
WebSocket channel. Enrollment needs no proof of identity, so this is never a production
authority. Build it with ``create_authority_app`` and mount it under ``/twfido``.
"""

from push.authority.app import create_authority_app

__all__ = ["create_authority_app"]
