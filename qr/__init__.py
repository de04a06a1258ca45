"""QR codes for the TW FidO I-SCAN fallback: the content of the code and its SVG rendering.

The login page shows the SVG from ``render_svg``; the phone app (or the phone simulator) scans
it and sends the content back to the authority. Nothing here does I/O.
"""

from __future__ import annotations

import io

import segno

ERROR_LEVEL = "m"  # 15% recovery survives a glare spot on a laptop screen and keeps the code small
BORDER = 4  # quiet zone in modules, the minimum that ISO/IEC 18004 sets
SCALE = 6  # pixels per module: whole pixels keep edges sharp (a version-10 code is 390 px wide)
TITLE = "行動自然人憑證 QR Code"  # read by screen readers and shown as a tooltip
DARK = "#000"
LIGHT = "#fff"  # a white quiet zone so the code still scans on a page with a dark background


def qr_payload(sp_ticket: str) -> str:
    """Return the text that the I-SCAN QR code contains for ``sp_ticket``."""
    # NOTE: the exact content of MOI's I-SCAN QR code is unconfirmed. Public demos encode the
    # bare sp_ticket, so this does the same, and the embedded authority expects exactly that.
    return sp_ticket


def build(payload: str) -> segno.QRCode:
    """Build the QR symbol for ``payload`` (a full QR code, never Micro QR)."""
    return segno.make(payload, error=ERROR_LEVEL, micro=False, boost_error=False)


def render_svg(payload: str) -> str:
    """Render ``payload`` as a standalone SVG document (no XML declaration)."""
    code = build(payload)
    width, height = code.symbol_size(scale=SCALE, border=BORDER)
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        scale=SCALE,
        border=BORDER,
        xmldecl=False,
        svgns=True,
        title=TITLE,
        dark=DARK,
        light=LIGHT,
        nl=False,
    )
    svg = out.getvalue().decode("utf-8")
    # crispEdges stops browsers from anti-aliasing module borders when the page scales the image,
    # and the viewBox lets the page resize it with CSS.
    extra = f'shape-rendering="crispEdges" role="img" viewBox="0 0 {width} {height}" '
    return svg.replace("<svg ", "<svg " + extra, 1)
