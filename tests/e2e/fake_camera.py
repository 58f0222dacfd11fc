"""A video file Chromium's fake camera plays: a ticket's QR code on white, as Y4M frames."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from eventhunting.tickets.qr_images import qr_png

WIDTH, HEIGHT = 640, 480
# The QR (456 px for a version 8 code at 8 px a module, quiet zone included) at 0.9 of the
# frame's height: sharp enough for a decoder, with white around it as on a phone screen.
QR_SIDE = 432
FRAMES = 10
FRAMES_PER_SECOND = 10


def camera_frame(qr_text: str | None) -> Image.Image:
    """A white frame with the QR of `qr_text` in its middle (a blank one for None)."""
    frame = Image.new("RGB", (WIDTH, HEIGHT), "white")
    if qr_text is not None:
        symbol = Image.open(io.BytesIO(qr_png(qr_text))).convert("RGB")
        symbol = symbol.resize((QR_SIDE, QR_SIDE), Image.Resampling.NEAREST)
        frame.paste(symbol, ((WIDTH - QR_SIDE) // 2, (HEIGHT - QR_SIDE) // 2))
    return frame


def i420_bytes(frame: Image.Image) -> bytes:
    """The frame as planar YUV 4:2:0: full-size Y, then Cb and Cr at half width and height."""
    luma, blue, red = frame.convert("YCbCr").split()
    half = (frame.width // 2, frame.height // 2)
    return (
        luma.tobytes()
        + blue.resize(half, Image.Resampling.BOX).tobytes()
        + red.resize(half, Image.Resampling.BOX).tobytes()
    )


def write_y4m(path: Path, qr_text: str | None, *, frames: int = FRAMES) -> Path:
    """Write a Y4M video (YUV4MPEG2: one header line, then `FRAME` + raw I420 per frame)
    showing `qr_text`'s code; Chromium plays it in a loop as the camera
    (`--use-file-for-fake-video-capture`)."""
    picture = i420_bytes(camera_frame(qr_text))
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FRAMES_PER_SECOND}:1 Ip A1:1 C420jpeg\n"
    with path.open("wb") as video:
        video.write(header.encode("ascii"))
        for _ in range(frames):
            video.write(b"FRAME\n")
            video.write(picture)
    return path
