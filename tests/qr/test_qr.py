"""QR rendering: the SVG contains exactly the payload, proven by decoding with zxing-cpp."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import segno
import zxingcpp
from PIL import Image, ImageDraw

import qr

TICKET = (
    "eyJ0cmFuc2FjdGlvbl9pZCI6IjEyMyIsImhpbnQiOiLlhajlnIvkuLvoqIjntrIoZUJBUykifQ"
    ".n3Q2Jm5m0mQ4bGQh0aJx2n8vKCpWm3r1Kq9P0m0Qy1c"
)
SVG_NS = "{http://www.w3.org/2000/svg}"


def rasterise(svg: str) -> Image.Image:
    """Draw segno's SVG (one path of horizontal strokes: M, m and h commands) with Pillow."""
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    width, height = int(root.attrib["width"]), int(root.attrib["height"])
    group = root.find(f"{SVG_NS}g")
    assert group is not None
    scale = float(re.fullmatch(r"scale\(([\d.]+)\)", group.attrib["transform"]).group(1))
    line = next(p for p in group.iter(f"{SVG_NS}path") if p.attrib.get("class") == "qrline")

    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for command, args in re.findall(r"([Mmh])([-\d.\s]+)", line.attrib["d"]):
        numbers = [float(n) for n in args.split()]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            row = y - 0.5
            draw.rectangle(
                [x * scale, row * scale, (x + numbers[0]) * scale - 1, (row + 1) * scale - 1],
                fill=0,
            )
            x += numbers[0]
    return image


def decode(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def test_payload_is_the_sp_ticket() -> None:
    assert qr.qr_payload(TICKET) == TICKET


def test_svg_is_standalone_with_zh_tw_title() -> None:
    svg = qr.render_svg(TICKET)
    root = ET.fromstring(svg)  # noqa: S314 (our own output)

    assert not svg.startswith("<?xml")
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}title").text == "行動自然人憑證 QR Code"
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    assert root.attrib["shape-rendering"] == "crispEdges"
    colours = set(re.findall(r'(?:fill|stroke)="([^"]+)"', svg))
    assert colours <= {"#000", "#fff"}


def test_svg_decodes_to_the_payload() -> None:
    image = rasterise(qr.render_svg(TICKET))

    assert decode(image) == [TICKET]


def test_png_decodes_to_the_payload() -> None:
    out = io.BytesIO()
    qr.build(TICKET).save(out, kind="png", scale=qr.SCALE, border=qr.BORDER)

    assert decode(Image.open(io.BytesIO(out.getvalue()))) == [TICKET]


def test_symbol_uses_error_level_m() -> None:
    code = qr.build(TICKET)

    assert code.error == "M"
    assert not code.is_micro
    assert isinstance(code, segno.QRCode)
