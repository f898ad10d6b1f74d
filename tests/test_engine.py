"""The agent loop end to end: real Chromium on local pages, the fake model through litellm's real path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.engine.browser import Browser
from agent.engine.loop import arun, stream
from agent.models import RunFinished, RunRequest, RunResponse, RunStarted, StepFinished, validation_errors
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from agent.testing.sites import serve_dir

PAGES = {
    "index.html": """<!doctype html><html><head><title>Shop home</title></head><body>
<h1>Tiny shop</h1>
<form action="results.html"><label for="q">Search</label><input id="q" name="q">
<button type="submit">Search</button></form>
<a href="about.html">About us</a> <a href="help.html" target="_blank">Open help</a>
<label for="size">Size</label><select id="size" name="size"><option>Small</option><option>Medium</option>
<option>Large</option></select>
<p id="chosen"></p>
<script>document.getElementById('size').onchange = e => document.getElementById('chosen').textContent =
 'Chosen size: ' + e.target.value;</script>
</body></html>""",
    "results.html": """<!doctype html><html><head><title>Results</title></head><body><h1>Results</h1><ul id="r"></ul>
<script>const q = new URLSearchParams(location.search).get('q') || '';
const items = [['USB-C cable 1 m', '9.99'], ['USB-C cable 2 m', '12.49'], ['HDMI cable', '7.00']];
for (const [n, p] of items.filter(i => i[0].toLowerCase().includes(q.toLowerCase()))) {
  const li = document.createElement('li'); li.textContent = n + ' costs EUR ' + p;
  document.getElementById('r').appendChild(li); }
document.title = 'Results for ' + q;</script></body></html>""",
    "about.html": """<!doctype html><html><head><title>About</title></head><body><h1>About us</h1>
<p>We were founded in 1999 in Lyon.</p><a href="index.html">Home</a></body></html>""",
    "help.html": """<!doctype html><html><head><title>Help</title></head><body><h1>Help centre</h1>
<p>Returns are free for 30 days.</p></body></html>""",
    "long.html": """<!doctype html><html><head><title>Long</title></head><body><h1>Top of the long page</h1>
<div style="height:6000px">spacer</div><p>The secret word is pelican.</p>
<button onclick="this.textContent='Pressed!'">Bottom button</button></body></html>""",
    "app.html": """<!doctype html><html><head><title>App</title><style>html,body{height:100%;margin:0;overflow:hidden}
#main{height:100%;overflow-y:auto}</style></head><body><div id="main"><div style="height:5000px">tall</div>
<p>End of feed</p></div></body></html>""",
}


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    """The engine's small test shop, served over HTTP."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        for name, html in PAGES.items():
            Path(root, name).write_text(html)
        server, url = serve_dir(Path(root))
        yield url
        server.shutdown()


def steps(*answers: Callable[[dict[str, Any]], Any] | dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """A handler answering the Nth step request with the Nth answer (extract calls are answered apart)."""
    counter = {"n": 0}

    def handler(body: dict[str, Any]) -> Any:
        if not body.get("tools"):  # an extract call: answer from the page text it carries
            text = body["messages"][-1]["content"]
            return reply("extracted: " + ("1999" if "1999" in text else "nothing"))
        n = min(counter["n"], len(answers) - 1)
        counter["n"] += 1
        answer = answers[n]
        return answer(body) if callable(answer) else answer

    return handler


async def go(request: dict[str, Any], browser: Browser, **options: Any) -> tuple[list[Any], RunResponse]:
    events = [e async for e in stream({"model": "gpt-4o-mini", **request}, browser=browser, **options)]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    return events, events[-1].response


def actions_of(response: RunResponse) -> list[tuple[str, dict[str, Any], bool | None, str | None]]:
    return [(a.name, a.params, a.success, a.error) for h in response.history for a in h.actions]


async def test_full_task_end_to_end(shop: str, browser: Browser, fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.handler = steps(
        lambda b: reply("Search for USB-C cables", call("input", index=find_index(b, "Search", tag="input"), text="usb-c"),
                        call("click", index=find_index(b, "Search", tag="button"))),
        lambda b: reply("Read the prices", call("done", text="USB-C cable 1 m at EUR 9.99", success=True))
        if "USB-C cable 1 m costs EUR 9.99" in last_user_text(b) else reply("no results?", call("wait", seconds=0)),
    )
    events, response = await go({"prompt": "Find the cheapest USB-C cable", "start_url": f"{shop}/index.html"},
                                browser, screenshot_dir=tmp_path)
    assert [type(e).__name__ for e in events] == [
        "RunStarted", "StepStarted", "StepFinished", "StepStarted", "StepFinished", "StepStarted", "StepFinished",
        "RunFinished"]
    assert (response.status, response.is_done, response.is_successful, response.error, response.stop_reason) == (
        "success", True, True, None, "done")
    assert response.result == "USB-C cable 1 m at EUR 9.99"
    for item in response.history:  # each part measured; together exactly the step's duration
        assert item.llm_ms >= 0 and item.browser_ms > 0 and item.own_ms >= 0
        assert item.llm_ms + item.browser_ms + item.own_ms == pytest.approx(item.duration_ms)
    assert [item.llm_ms > 0 for item in response.history] == [False, True, True]
    assert [h.description for h in response.history] == ["Open the start page", "Search for USB-C cables",
                                                          "Read the prices"]
    assert [(n, p, s, e) for n, p, s, e in actions_of(response)] == [
        ("navigate", {"url": f"{shop}/index.html"}, True, None),
        ("input", {"index": 1, "text": "usb-c"}, True, None),
        ("click", {"index": 2}, True, None),
        ("done", {"text": "USB-C cable 1 m at EUR 9.99", "success": True}, True, None),
    ]
    typed = response.history[1].actions[0]
    assert typed.locators and typed.locators["attributes"]["id"] == "q" and typed.locators["tag"] == "input"
    assert response.history[2].url.startswith(f"{shop}/results.html?q=usb-c")
    assert response.history[2].title == "Results for usb-c"
    shots = sorted(p.name for p in tmp_path.iterdir())
    assert shots == ["step-002.jpg", "step-003.jpg"]
    assert all(0 < (tmp_path / s).stat().st_size <= 400_000 for s in shots)
    assert response.usage.llm_calls == 2 and response.usage.input_tokens == 200
    first_request = fake_llm.requests[0]
    assert {t["function"]["name"] for t in first_request["tools"]} == {
        "navigate", "search", "go_back", "wait", "click", "hover", "input", "send_keys", "scroll", "select_dropdown",
        "dropdown_options", "switch", "close", "extract", "find_text", "done"}
    # Earlier steps come back summarised, not replayed in full.
    second = last_user_text(fake_llm.requests[1])
    assert 'Step 2: Search for USB-C cables' in second and 'input{"index":1,"text":"usb-c"} -> ok' in second


async def test_navigation_actions_tabs_and_dropdowns(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(
        lambda b: reply("See the sizes", call("dropdown_options", index=find_index(b, "Size", tag="select"))),
        lambda b: reply("Pick large", call("select_dropdown", index=find_index(b, "Size", tag="select"), text="Large")),
        lambda b: reply("Open help", call("click", index=find_index(b, "Open help"))),
        lambda b: reply("Back to the shop tab", call("switch", tab_id=0)),
        lambda b: reply("Close help", call("close", tab_id=1)),
        lambda b: reply("Go to about", call("navigate", url=b["messages"][1]["content"].split('url="')[1].split("index.html")[0] + "about.html")),
        lambda b: reply("Read the year", call("extract", query="founding year")),
        lambda b: reply("Back", call("go_back")),
        lambda b: reply("Done", call("done", text="1999", success=True)),
    )
    _, response = await go({"prompt": "Explore the shop", "start_url": f"{shop}/index.html"}, browser)
    got = actions_of(response)
    assert response.status == "success", response.error
    assert [g[0] for g in got] == ["navigate", "dropdown_options", "select_dropdown", "click", "switch", "close",
                                   "navigate", "extract", "go_back", "done"]
    assert all(g[2] for g in got), got
    contents = [a.extracted_content for h in response.history for a in h.actions]
    size = got[1][1]["index"]
    assert contents[1] == f"options of [{size}]:\n- Small\n- Medium\n- Large"
    assert contents[2] == f"selected 'Large' in [{size}]"
    assert "opened tab 1" in contents[3] and "help.html" in contents[3]
    assert contents[7] == "extracted: 1999"
    assert "Chosen size: Large" in last_user_text(fake_llm.requests[2])
    extract_calls = [c for h in response.history for c in h.llm_calls if c.purpose == "extract"]
    assert len(extract_calls) == 1 and response.usage.llm_calls == 10


async def test_scroll_find_text_keys_and_wait(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(
        lambda b: reply("Scroll down", call("scroll", down=True, pages=2)),
        lambda b: reply("Find the word", call("find_text", text="secret word")),
        lambda b: reply("Press it", call("click", index=find_index(b, "Bottom button"))),
        lambda b: reply("Keys and wait", call("send_keys", keys="End"), call("wait", seconds=0.1)),
        lambda b: reply("Missing text", call("find_text", text="no such phrase anywhere")),
        lambda b: reply("Done", call("done", text="pelican" if "Pressed!" in last_user_text(b) else "?", success=True)),
    )
    _, response = await go({"prompt": "Find the secret word", "start_url": f"{shop}/long.html"}, browser)
    got = actions_of(response)
    assert response.result == "pelican"
    assert got[1][0] == "scroll" and got[1][2] is True
    assert response.history[1].actions[0].extracted_content == "scrolled down 1600 px"
    assert got[2] == ("find_text", {"text": "secret word"}, True, None)
    assert got[4][0] == "send_keys" and got[5][:3] == ("wait", {"seconds": 0.1}, True)
    assert got[6] == ("find_text", {"text": "no such phrase anywhere"}, False,
                      "the text 'no such phrase anywhere' is not on the page")


async def test_model_mistakes_go_back_to_the_model(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(
        reply("Bad json", call("click", _raw='{"index": ')),
        reply("Unknown", call("fly", to="moon")),
        reply("Wrong type", call("click", index="first")),
        reply("Stale index", call("click", index=999)),
        lambda b: reply("Done", call("done", text="recovered", success=True)),
    )
    _, response = await go({"prompt": "Try things", "start_url": f"{shop}/index.html"}, browser, max_failures=5)
    errors = [e for _, _, _, e in actions_of(response)][1:5]
    assert errors[0].startswith("click: arguments are not valid JSON")
    assert errors[1].startswith("unknown action 'fly'; use one of: navigate, search")
    assert errors[2].startswith("click: bad arguments (index: Input should be a valid integer")
    assert "element [999]" in errors[3]
    assert response.status == "success"
    # Each error is shown to the model on the next step.
    assert "unknown action 'fly'" in last_user_text(fake_llm.requests[2])


async def test_structured_output_invalid_then_repaired(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
              "required": ["name", "price"], "additionalProperties": False}
    fake_llm.handler = steps(
        reply("Answer", call("done", data={"name": "USB-C cable 1 m", "price": "9.99"})),
        reply("Fix it", call("done", data={"name": "USB-C cable 1 m", "price": 9.99}, success=True)),
    )
    _, response = await go({"prompt": "Cheapest cable as JSON", "json_schema": json.dumps(schema)}, browser)
    assert response.status == "success"
    assert response.result == {"name": "USB-C cable 1 m", "price": 9.99}
    first = response.history[0].actions[0]
    assert first.success is False and "price: '9.99' is not of type 'number'" in first.error
    done_tool = [t for t in fake_llm.requests[0]["tools"] if t["function"]["name"] == "done"][0]
    assert done_tool["function"]["parameters"]["properties"]["data"]["required"] == ["name", "price"]


async def test_structured_output_gives_up_after_bounded_retries(browser: Browser, fake_llm: FakeLLM) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake_llm.handler = lambda b: reply("Answer", call("done", data={"n": "x"}))
    _, response = await go({"prompt": "A number", "json_schema": schema}, browser, max_validation_retries=1)
    assert response.status == "failure" and response.is_successful is False
    assert response.error.startswith("the result did not match the JSON schema after 2 attempts")
    assert response.stop_reason == "invalid_result"
    assert len(fake_llm.requests) == 2


async def test_json_response_format_without_schema(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: reply("Answer", call("done", data=[1, "two", {"three": 3}]))
    _, response = await go({"prompt": "Any JSON", "response_format": "json"}, browser)
    assert response.result == [1, "two", {"three": 3}] and response.status == "success"


async def test_done_with_success_false_is_a_failure(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: reply("Give up", call("done", text="the site is down", success=False))
    _, response = await go({"prompt": "Impossible task"}, browser)
    assert (response.status, response.is_done, response.is_successful, response.result, response.stop_reason) == (
        "failure", True, False, "the site is down", "done_failure")


async def test_server_errors_are_retried_then_stop_the_run(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: 500
    fake_llm.delay_s = 0.05
    _, response = await go({"prompt": "Anything"}, browser, max_failures=2,
                           llm=__import__("agent.engine.llm", fromlist=["LLM"]).LLM("openai", "gpt-4o-mini", backoff_s=0.01))
    assert response.status == "failure"
    assert response.error.startswith("stopped after 2 consecutive failures")
    assert "500" in response.error
    assert response.stop_reason == "model_error"  # the provider failed, not the agent
    assert len(fake_llm.requests) == 8  # 2 steps x (1 + 3 retries)
    assert [h.description.startswith("The model could not be used") for h in response.history] == [True, True]
    assert all(c.error for h in response.history for c in h.llm_calls)
    # The time spent on the failed calls (4 attempts of >= 50 ms each, backoff between) is the model's.
    for item in response.history:
        assert item.llm_ms >= 200 and item.llm_calls[0].latency_ms >= 200
        assert item.llm_ms + item.browser_ms + item.own_ms == pytest.approx(item.duration_ms)
        assert item.own_ms < item.llm_ms


async def test_a_refused_key_ends_the_run_at_once_with_the_count_right(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: 401
    _, response = await go({"prompt": "Anything"}, browser, max_failures=3)
    assert (response.status, response.stop_reason, len(response.history)) == ("failure", "model_error", 1)
    assert response.error.startswith("the model could not be used (auth): the openai API refused the key")
    assert "consecutive failures" not in response.error
    assert len(fake_llm.requests) == 1 and response.history[0].llm_ms > 0


async def test_rate_limit_then_success(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.script([429, reply("ok", call("done", text="fine", success=True))])
    from agent.engine.llm import LLM

    _, response = await go({"prompt": "Anything"}, browser, llm=LLM("openai", "gpt-4o-mini", backoff_s=0.01))
    assert response.status == "success" and len(fake_llm.requests) == 2


async def test_max_steps_reached(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: reply("Keep scrolling", call("scroll", down=True))
    _, response = await go({"prompt": "Scroll forever", "start_url": f"{shop}/long.html", "max_steps": 3}, browser)
    assert response.status == "failure" and response.is_done is False
    assert response.error == "reached max_steps (3) without calling done"
    assert response.stop_reason == "max_steps"
    assert len(response.history) == 3


async def test_timeout_ends_the_run(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.delay_s = 2.0
    fake_llm.handler = lambda b: reply("slow", call("wait", seconds=0))
    _, response = await go({"prompt": "Slow model"}, browser, timeout_s=1.0)
    assert response.status == "failure" and response.error == "timed out after 1 s"
    assert response.stop_reason == "timeout"
    assert response.duration_ms < 1900


async def test_cancel_ends_the_run(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.delay_s = 0.3
    fake_llm.handler = lambda b: reply("wait", call("wait", seconds=0))
    cancel = asyncio.Event()
    events = []
    async for event in stream({"prompt": "Cancel me", "model": "m"}, browser=browser, cancel=cancel):
        events.append(event)
        if isinstance(event, StepFinished) and event.item.step == 2:
            cancel.set()
    response = events[-1].response
    assert response.status == "failure" and response.error == "cancelled" and len(response.history) == 2
    assert response.stop_reason == "cancelled"


async def test_missing_key_is_an_honest_failure(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    events = [e async for e in stream({"prompt": "Anything", "provider": "anthropic"}, browser=browser)]
    assert [type(e) for e in events] == [RunStarted, RunFinished]
    response = events[-1].response
    assert response.status == "failure" and "set ANTHROPIC_API_KEY" in response.error
    assert response.stop_reason == "missing_key"
    assert response.model == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("url", "reason"),
    [("file:///etc/passwd", "scheme"), ("http://169.254.169.254/latest/meta-data/", "metadata"),
     ("javascript:alert(1)", "scheme"), ("https://elsewhere.example/", "allowed")],
)
async def test_blocked_navigation(url: str, reason: str, shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(reply("Go", call("navigate", url=url)),
                             reply("Stop", call("done", text="blocked", success=False)))
    _, response = await go({"prompt": "Open a page", "allowed_domains": ["127.0.0.1"]}, browser)
    error = response.history[0].actions[0].error
    assert error.startswith("navigation refused:") and reason in error.lower()


async def test_run_and_arun_python_api(shop: str, fake_llm: FakeLLM) -> None:
    from agent import RunRequest
    from agent import arun as top_arun

    fake_llm.handler = lambda b: reply("done", call("done", text="ok", success=True))
    response = await top_arun(RunRequest(prompt="Say ok", model="gpt-4o-mini"), max_steps=2)
    assert response.status == "success" and response.result == "ok"
    assert arun is top_arun


async def test_scroll_reaches_the_scroll_box_of_an_app_layout(shop: str, browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(reply("Scroll", call("scroll", down=True, pages=1)),
                             reply("Done", call("done", text="ok", success=True)))
    _, response = await go({"prompt": "Scroll the feed", "start_url": f"{shop}/app.html"}, browser)
    assert response.history[1].actions[0].extracted_content == "scrolled down 800 px"


async def test_vision_sends_the_screenshot_to_a_model_that_takes_images(
    shop: str, browser: Browser, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.handler = lambda b: reply("done", call("done", text="seen", success=True))
    _, response = await go({"prompt": "Look at the page", "model": "gpt-4o", "start_url": f"{shop}/index.html",
                            "use_vision": True}, browser, screenshot_dir=tmp_path)
    content = fake_llm.requests[0]["messages"][1]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")  # a JPEG
    assert response.status == "success"
    # Without vision the message is text only.
    fake_llm.reset()
    await go({"prompt": "Look at the page", "model": "gpt-4o", "start_url": f"{shop}/index.html",
              "use_vision": False}, browser, screenshot_dir=tmp_path)
    assert isinstance(fake_llm.requests[0]["messages"][1]["content"], str)
    # A model litellm knows to take no images is refused at submission, naming the model...
    with pytest.raises(ValidationError) as refused:
        RunRequest(prompt="Look at the page", model="gpt-3.5-turbo", use_vision=True)
    assert validation_errors(refused.value) == [{"field": "use_vision", "message": (
        "the model 'gpt-3.5-turbo' (openai) takes no images according to litellm's model map; turn use_vision "
        "off or pick a vision model")}]
    # ...and, asked for through the engine's options, ends the run before any browser or model call.
    fake_llm.reset()
    events = [e async for e in stream({"prompt": "Look", "model": "gpt-3.5-turbo"}, browser=browser, use_vision=True)]
    assert [type(e) for e in events] == [RunStarted, RunFinished] and fake_llm.requests == []
    assert events[-1].response.error.startswith("the model 'gpt-3.5-turbo' takes no images")
    # A model litellm does not know (a local llava behind OPENAI_BASE_URL) gets the image it was asked for.
    fake_llm.reset()
    await go({"prompt": "Look at the page", "model": "llava-local", "start_url": f"{shop}/index.html",
              "use_vision": True}, browser, screenshot_dir=tmp_path)
    assert [p["type"] for p in fake_llm.requests[0]["messages"][1]["content"]] == ["text", "image_url"]


async def test_search_builds_the_engine_url_and_obeys_the_policy(browser: Browser, fake_llm: FakeLLM) -> None:
    fake_llm.handler = steps(reply("Search", call("search", query="usb c cable", engine="bing")),
                             reply("Bad engine", call("search", query="x", engine="altavista")),
                             reply("Stop", call("done", text="no web here", success=False)))
    _, response = await go({"prompt": "Search the web", "allowed_domains": ["127.0.0.1"]}, browser)
    errors = [a.error for h in response.history for a in h.actions]
    assert errors[0].startswith("navigation refused: host 'www.bing.com' is not in")
    assert errors[1] == "unknown engine 'altavista'; use one of duckduckgo, google, bing"


async def test_remote_browser_over_cdp(shop: str, fake_llm: FakeLLM, tmp_path: Path) -> None:
    import socket
    import subprocess

    from agent.engine.browser import find_chromium

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # wait until the DevTools endpoint answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        remote = Browser(cdp_url=f"http://127.0.0.1:{port}")
        assert remote.description == f"remote browser over CDP (http://127.0.0.1:{port})"
        fake_llm.handler = lambda b: reply("done", call("done", text=last_user_text(b).split("title=\"")[1].split('"')[0],
                                                        success=True))
        _, response = await go({"prompt": "Read the title", "start_url": f"{shop}/about.html"}, remote)
        assert response.status == "success" and response.result == "About"
        await remote.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_run_is_the_blocking_twin(shop: str, fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda b: reply("done", call("done", text="blocking ok", success=True))
    from agent import run as top_run

    response = top_run({"prompt": "Say ok", "model": "gpt-4o-mini", "start_url": f"{shop}/index.html"})
    assert (response.status, response.result, len(response.history)) == ("success", "blocking ok", 2)
