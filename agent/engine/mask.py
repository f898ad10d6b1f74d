"""Screenshots with every visible secret painted over, before anything keeps or sends them.

`SecretMask(values)` holds the run's `sensitive_data` values as one browser regex (every spelling,
agent.engine.spellings); `screenshot(page, mask)` reads, in every frame (cross-origin ones too) and
every shadow root (closed ones too), where the page shows one of them (agent/engine/mask.js: text,
field values, shown attributes), takes the screenshot, and paints those rectangles in MASK_RGB on the
image itself: nothing is added to the page, so neither its scripts nor its styles can hide, move or
lift the mask, and the observation running meanwhile sees the page as it is. A frame that cannot be
read (gone mid-read, too large to read in time) is painted over whole; a main frame that cannot be
read, or a page that navigates during the screenshot, gives no screenshot at all.

What cannot be promised (docs/security.md): a page that transforms a value before showing it
(reversed, split across blocks, drawn on a canvas or an image).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from playwright.async_api import Frame, Locator, Page

from agent.engine.spellings import value_pattern

__all__ = ["MASK_RGB", "SecretMask", "screenshot"]

MASK_JS = Path(__file__).with_name("mask.js").read_text(encoding="utf-8")
MASK_RGB = (255, 0, 255)  # the colour painted over a secret (Playwright's own mask colour)
MAX_FRAMES = 50  # frames read for secrets; a page's further frames are painted over whole
FRAME_TIMEOUT_S = 5.0
READ_BUDGET_MS = 2_000  # per frame; a larger page is painted over whole rather than shown
MAX_TEXT_CHARS = 5_000_000  # per document or shadow root
QUALITIES = (70, 45, 25)  # JPEG qualities tried in turn to stay under the size cap
CAPTURE_QUALITY = 90  # a screenshot to paint on: close to lossless, and cheaper for Chromium than a PNG

Rect = tuple[float, float, float, float]  # x, y, width, height in CSS pixels of the page's viewport


class SecretMask:
    """The values a run must never show in a screenshot, as one browser regex."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = sorted({v for v in values if v}, key=len, reverse=True)
        self.pattern = "|".join(value_pattern(v, flavor="js") for v in self.values)

    def __bool__(self) -> bool:
        return bool(self.pattern)

    async def rects(self, page: Page) -> list[Rect]:
        """Where the page shows a secret, in viewport pixels; FrameUnreadable if the main frame cannot be read."""
        out: list[Rect] = []
        origins: dict[Frame, tuple[Rect, bool] | None] = {}
        for n, frame in enumerate(page.frames):
            where = await _visible_box(frame, origins)
            if where is None:
                continue  # scrolled away, hidden, or inside a frame that is
            box, exact = where
            if n >= MAX_FRAMES:  # more frames than we read: the rest are painted over whole
                out.append(box)
                continue
            try:
                found = await asyncio.wait_for(frame.evaluate(MASK_JS, {
                    "pattern": self.pattern, "maxChars": MAX_TEXT_CHARS, "budgetMs": READ_BUDGET_MS}), FRAME_TIMEOUT_S)
            except Exception as exc:
                if frame == page.main_frame:
                    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise FrameUnreadable(f"the page could not be read for secrets: {why}") from None
                out.append(box)  # a frame we could not read: nothing of it is shown
                continue
            if not found["complete"] or (found["rects"] and not exact):
                out.append(box)  # too large to read in time, or showing a secret at a place we cannot tell
                continue
            x0, y0 = box[0], box[1]
            out += [r for r in (_clip((x0 + x, y0 + y, w, h), box) for x, y, w, h in found["rects"]) if r]
        return out


class FrameUnreadable(RuntimeError):
    """The page could not be read for secrets, so no screenshot of it may be kept; take it again later."""


async def screenshot(page: Page, mask: SecretMask | None, *, max_bytes: int,
                     also: Sequence[Locator] = ()) -> bytes | None:
    """A JPEG of the viewport under `max_bytes` with every visible secret painted over; None if none could be taken.

    `also`: elements painted over whatever they show (the fields typed into, agent.engine.secrets).
    """
    if not mask:
        return await _jpeg(page, also, max_bytes)
    url = page.url
    rects = await mask.rects(page)
    if not rects:
        data = await _jpeg(page, also, max_bytes)
    else:
        # Taken at a high quality (cheaper than PNG), painted, then encoded once more under the size cap.
        shot = await page.screenshot(type="jpeg", quality=CAPTURE_QUALITY, timeout=10_000, mask=list(also))
        data = await asyncio.to_thread(paint, shot, rects, max_bytes, await _viewport_width(page))
    if page.url != url:  # the page moved on while we looked: what the picture shows was never read
        return None
    return data


async def _jpeg(page: Page, also: Sequence[Locator], max_bytes: int) -> bytes | None:
    for quality in QUALITIES:
        data = await page.screenshot(type="jpeg", quality=quality, timeout=10_000, mask=list(also))
        if len(data) <= max_bytes:
            return data
    return None


def paint(image: bytes, rects: Sequence[Rect], max_bytes: int, viewport_width: float) -> bytes | None:
    """`image` with `rects` (viewport CSS pixels) filled in MASK_RGB, as a JPEG under `max_bytes` (or None)."""
    from PIL import Image, ImageDraw  # only when there is something to paint

    with Image.open(io.BytesIO(image)) as src:
        img = src.convert("RGB")
    scale = img.width / viewport_width if viewport_width else 1.0  # device pixels per CSS pixel
    draw = ImageDraw.Draw(img)
    for x, y, w, h in rects:
        draw.rectangle([int(x * scale), int(y * scale), int((x + w) * scale + 1), int((y + h) * scale + 1)],
                       fill=MASK_RGB)
    for quality in QUALITIES:
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=quality)
        if out.tell() <= max_bytes:
            return out.getvalue()
    return None


async def _viewport_width(page: Page) -> float:
    size = page.viewport_size
    if size:
        return float(size["width"])
    return float(await page.evaluate("window.innerWidth"))


_BOX_JS = """el => {
  const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  const left = r.left + el.clientLeft + parseFloat(cs.paddingLeft || '0');
  const top = r.top + el.clientTop + parseFloat(cs.paddingTop || '0');
  const hidden = cs.visibility === 'hidden' || cs.display === 'none';
  const width = el.clientWidth - parseFloat(cs.paddingLeft || '0') - parseFloat(cs.paddingRight || '0');
  const height = el.clientHeight - parseFloat(cs.paddingTop || '0') - parseFloat(cs.paddingBottom || '0');
  return hidden ? null : [left, top, width, height];
}"""


async def _visible_box(frame: Frame, seen: dict[Frame, tuple[Rect, bool] | None]) -> tuple[Rect, bool] | None:
    """The part of the viewport where `frame`'s content shows (page pixels) and whether that place is exact
    (False: the frame could not be located, its parent's box stands for it); None where none of it shows."""
    if frame in seen:
        return seen[frame]
    where: tuple[Rect, bool] | None = None
    parent = frame.parent_frame
    if parent is None:
        size = frame.page.viewport_size or {"width": 100_000, "height": 100_000}
        where = ((0.0, 0.0, float(size["width"]), float(size["height"])), True)
    elif (outer := await _visible_box(parent, seen)) is not None:
        try:
            element = await asyncio.wait_for(frame.frame_element(), FRAME_TIMEOUT_S)
            inner: Any = await asyncio.wait_for(element.evaluate(_BOX_JS), FRAME_TIMEOUT_S)
        except Exception:
            where = (outer[0], False)  # cannot tell where it is inside its parent
        else:
            box = None if inner is None else _clip(
                (outer[0][0] + inner[0], outer[0][1] + inner[1], inner[2], inner[3]), outer[0])
            where = None if box is None else (box, outer[1])
    seen[frame] = where
    return where


def _clip(rect: Rect, within: Rect) -> Rect | None:
    x0, y0 = max(rect[0], within[0]), max(rect[1], within[1])
    x1, y1 = min(rect[0] + rect[2], within[0] + within[2]), min(rect[1] + rect[3], within[1] + within[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None
