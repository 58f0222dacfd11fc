"""Ticket QR codes drawn as PNG (mailed inline) and SVG (served for printing) images."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathImage

ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
"""Medium (15 %) recovery: a scuffed phone screen or a crease still scans."""
MODULE_PIXELS = 8
"""A version 8 code (49 modules and a 4-module margin) becomes a 456-pixel PNG."""
QUIET_ZONE_MODULES = 4


def qr_symbol(text: str) -> qrcode.QRCode:
    """The smallest QR symbol at error correction M that holds `text`."""
    symbol = qrcode.QRCode(
        version=None,
        error_correction=ERROR_CORRECTION,
        box_size=MODULE_PIXELS,
        border=QUIET_ZONE_MODULES,
    )
    symbol.add_data(text)
    symbol.make(fit=True)
    return symbol


def qr_version(text: str) -> int:
    """The QR version (1-40) `text` needs at error correction M."""
    version: int = qr_symbol(text).version
    return version


def qr_png(text: str) -> bytes:
    """`text` as a black-on-white PNG QR code."""
    buffer = io.BytesIO()
    qr_symbol(text).make_image(image_factory=PilImage).save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg(text: str) -> bytes:
    """`text` as a standalone SVG QR code (one path, sized in millimetres)."""
    image = qr_symbol(text).make_image(image_factory=SvgPathImage)
    rendered: bytes = image.to_string()
    return rendered
