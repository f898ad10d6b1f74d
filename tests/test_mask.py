"""Screenshots paint over every visible secret before they are kept or sent: real Chromium on local pages,
the secret at known places (text, a field, a placeholder, open and closed shadow roots, an iframe of the
page's origin and one of another, percent-encoded, split across elements), checked pixel by pixel; then
a whole run (the fake model, with vision) on the page typed into and on the next one that echoes it."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from agent.engine.browser import Browser
from agent.engine.loop import arun
from agent.engine.mask import MASK_RGB
from agent.engine.secrets import Secrets
from agent.models import RunRequest
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.secretsite import FRAME_TEXT_AT, SPOTS, SecretSite

SECRET = "Zq~9*!'(x) &+%/?#\"<>\\,ßé😀"


@pytest.fixture(scope="module")
def site() -> Iterator[SecretSite]:
    s = SecretSite()
    yield s
    s.close()


def masked_share(image: Image.Image, left: int, top: int, width: int = 60, height: int = 14) -> float:
    """The share of pixels in the box (from left+3, top+8) painted in the mask colour."""
    box = image.convert("RGB").crop((left + 3, top + 8, left + 3 + width, top + 8 + height))
    pixels = [box.getpixel((x, y)) for x in range(box.width) for y in range(box.height)]
    near = [p for p in pixels if all(abs(c - m) < 70 for c, m in zip(p, MASK_RGB, strict=True))]
    return len(near) / len(pixels)


def spot(name: str) -> tuple[int, int]:
    """Where the value shows for `name` (inside an iframe: the iframe's place, its border and the text's place)."""
    left, top = SPOTS[name]
    if name in ("frame", "cross_frame"):
        return left + 2 + FRAME_TEXT_AT[0], top + 2 + FRAME_TEXT_AT[1]
    return left, top


async def test_every_visible_occurrence_is_painted_over(browser: Browser, site: SecretSite, tmp_path: Path) -> None:
    from urllib.parse import quote

    async with browser.session() as session:
        await session.page.goto(f"{site.url}/masked?v={quote(SECRET, safe='')}", wait_until="load")
        await session.page.wait_for_function("document.querySelectorAll('iframe').length === 2 && "
                                             "Array.from(document.querySelectorAll('iframe')).every("
                                             "f => f.contentWindow && f.contentWindow.length === 0)")
        for frame in session.page.frames[1:]:
            await frame.wait_for_load_state("load")
        plain = Image.open(await session.screenshot(tmp_path / "plain.jpg") or "")
        await session.hide(Secrets({"pw": SECRET}))
        shot = await session.screenshot(tmp_path / "masked.jpg")
    assert shot is not None
    image = Image.open(shot)
    places = [name for name in SPOTS if name != "control"]
    # Before hiding, nothing was painted; after, every place showing the value is.
    assert {name: masked_share(plain, *spot(name)) for name in places} == {name: 0.0 for name in places}
    shares = {name: masked_share(image, *spot(name)) for name in places}
    assert all(share > 0.9 for share in shares.values()), shares
    assert masked_share(image, *spot("control")) == 0.0  # text that is no secret stays readable


def typing_model(site: SecretSite) -> Callable[[dict[str, Any]], Any]:
    """Type the secret into the search box (step 2, after the start page), search (step 3), report (step 4)."""
    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        if "Step 2 of" in text:
            return reply("Type it.", call("input", index=find_index(body, "Search words", tag="input"),
                                          text="<secret>pw</secret>"))
        if "Step 3 of" in text:
            return reply("Search.", call("click", index=find_index(body, "Search", tag="button")))
        return reply("Seen.", call("done", text="searched", success=True))
    return handler


def sent_images(fake: FakeLLM) -> list[Image.Image]:
    """The screenshots the model was sent, in order."""
    images = []
    for body in fake.requests:
        for message in body["messages"]:
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    data = part["image_url"]["url"].split(",", 1)[1]
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return images


async def test_a_run_masks_the_page_typed_into_and_the_page_that_echoes(browser: Browser, site: SecretSite,
                                                                         fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.reset(typing_model(site))
    request = RunRequest(prompt="Search for <secret>pw</secret>", model="gpt-4o-mini", start_url=f"{site.url}/get",
                         use_vision=True, max_steps=5, sensitive_data={"pw": SECRET})
    response = await arun(request, browser=browser, screenshot_dir=tmp_path)
    assert response.status == "success", response.error
    assert site.sent("GET", "/echo"), "the form was submitted"
    assert SECRET not in json.dumps(fake_llm.requests, ensure_ascii=False)
    shots = {item.step: Image.open(item.screenshot) for item in response.history if item.screenshot}
    assert sorted(shots) == [2, 3, 4]  # step 1 opened the start page
    sent = sent_images(fake_llm)
    assert len(sent) == 3  # the model saw each as stored
    # Step 3: the search box holds the value (the field is at the form's place, found by the browser).
    async with browser.session() as session:
        await session.page.goto(f"{site.url}/get", wait_until="load")
        box = await session.page.locator("#q").bounding_box()
    assert box is not None
    for image in (shots[3], sent[1]):
        assert masked_share(image, int(box["x"]), int(box["y"]) - 6, width=40, height=8) > 0.9
    # Step 4: the next page echoes it in text, in the refilled field, as JSON and as the raw query.
    for image in (shots[4], sent[2]):
        for name in ("text", "field", "encoded", "split"):
            assert masked_share(image, *spot(name)) > 0.9, name
        assert masked_share(image, *spot("control")) == 0.0
