"""The result of a replay: the recorded `done` with the new values, page values read again.

A recorded result mixes three kinds of text: parameter values (`{{name}}`, substituted), the
agent's own wording (kept), and values it read off a page (a product name, a code, a price, a
status word) that differ from one replay to the next. The agent run that recorded the workflow
traced those (agent.engine.provenance): each is a reference `{{page:N}}` in the template, with the
element that showed it on the final page. A replay reads each again from that element (found by its
id, css, xpath, position; never by its old text) on the page it reached, strips the label around it
and writes it as the agent did (upper-cased, ...). A value that cannot be read again, or was seen
only on an earlier page, makes the result unavailable (`ResultUnavailable`): the replay then lets
the agent produce the result, or fails saying why; it never returns a stale value as if it were
fresh. Values read from one item of a list (a card's name and price) are read again inside one item
(agent.workflows.items): a replay never answers with one item's name and another's price.

Workflows recorded before page references existed (no `page_values` on their `done`) are read the
old way: the recorded final page is opened in a passing tab to find the elements that showed the
recorded values, and values holding digits that cannot be read again make the result unavailable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from agent.engine.browser import BrowserSession
from agent.engine.provenance import PAGE_REF_RE, describe_text, number_pattern, page_texts
from agent.rules.policy import PolicyError, check_navigation
from agent.workflows.document import PLACEHOLDER_RE
from agent.workflows.items import ItemUnavailable, read_item
from agent.workflows.locate import LocateError, read_text
from agent.workflows.template import as_text, find_value, render

__all__ = ["ResultUnavailable", "derive_result", "read_page_value", "render_result"]

MAX_PAGE_CHARS = 300_000
REF_TIMEOUT_MS = 10_000
_NUMBER_RE = re.compile(r"(?<![\w.,])[-+]?(?:\d{1,3}(?:[ ,.]\d{3})+|\d+)(?:[.,]\d+)?(?![\w])")
_TOKEN_RE = re.compile(r"[^\s\"'“”‘’()\[\]{}<>]*\d[^\s\"'“”‘’()\[\]{}<>]*")


class ResultUnavailable(Exception):
    """The recorded result holds page values that could not be read again from the final page."""


def _norm(text: str) -> str:
    return " ".join(text.split())


async def _page_text(page: Any) -> str:
    try:
        text = await page.evaluate(
            "(n) => (document.body ? document.body.innerText : '').slice(0, n)", MAX_PAGE_CHARS)
    except Exception:
        return ""
    return _norm(str(text or ""))


def _present(value: str, page_text: str) -> bool:
    """Whether `value` shows on the page (numbers in any usual format: 5.49, 5,49, 1,234.00)."""
    value = _norm(value)
    if not value:
        return True
    pattern = number_pattern(value)
    if pattern is not None:
        return bool(pattern.search(page_text))
    return value in page_text


def _to_number(text: str, like: Any) -> int | float:
    m = _NUMBER_RE.search(text)
    if not m:
        raise ValueError(f"no number in {text!r}")
    raw = m.group(0).replace(" ", "")
    if "," in raw and "." in raw:
        raw = raw.replace(",", "") if raw.rfind(".") > raw.rfind(",") else raw.replace(".", "").replace(",", ".")
    elif "," in raw:
        head, _, tail = raw.rpartition(",")
        raw = raw.replace(",", "") if len(tail) == 3 and head else raw.replace(",", ".")
    number = float(raw)
    if isinstance(like, int) and number.is_integer():
        return int(number)
    return number


class _Reference:
    """The page the recorded run ended on, opened once in a passing tab, and its element texts."""

    def __init__(self, session: BrowserSession, url: str | None, allowed: list[str] | None, blocked: list[str] | None,
                 marks: Iterator[int]):
        self.session, self.url, self.allowed, self.blocked = session, url, allowed, blocked
        self.marks = marks  # the replay's element numbering
        self.page: Any = None
        self.texts: list[str] = []
        self.error: str | None = None
        self._previous: int | None = None

    async def open(self) -> bool:
        if not self.url or not self.url.startswith(("http://", "https://")):
            self.error = "the recorded final page has no web address"
            return False
        try:
            url = check_navigation(self.url, allowed_domains=self.allowed, blocked_domains=self.blocked)
        except PolicyError as exc:
            self.error = f"the recorded final page is not allowed ({exc})"
            return False
        self._previous = self.session.current_id
        try:
            self.page = await self.session.context.new_page()
            await self.page.goto(url, wait_until="domcontentloaded", timeout=REF_TIMEOUT_MS)
            self.texts = await page_texts(self.page)
        except Exception as exc:
            self.error = f"the recorded final page {self.url} could not be opened ({str(exc).splitlines()[0][:200]})"
            return False
        return True

    async def close(self) -> None:
        if self.page is not None:
            try:
                await self.page.close()
            except Exception:
                pass
            if self._previous is not None and self._previous in self.session.tabs:
                self.session.current_id = self._previous  # the passing tab must not become the current one

    async def locators(self, n: int) -> dict[str, Any] | None:
        return await describe_text(self.page, n)

    def element_holding(self, value: str) -> tuple[int, str, str] | None:
        """(element n, text before, text after) of the smallest element whose text holds `value` as a word."""
        best: tuple[int, int, str, str] | None = None
        for n, text in enumerate(self.texts):
            if text == value:
                return n, "", ""
            spans = find_value(text, value, ignore_case=False)
            if spans and (best is None or len(text) < best[1]):
                s, e = spans[0]
                best = (n, len(text), text[:s], text[e:])
        return (best[0], best[2], best[3]) if best else None


async def _read_again(ref: _Reference, page: Any, n: int, before: str, after: str, like: Any) -> Any:
    """The value now shown by the element that showed the recorded one (prefix/suffix trimmed)."""
    locators = await ref.locators(n)
    if not locators:
        raise ResultUnavailable("its element on the recorded page vanished")
    try:
        text = _norm(await read_text(page, locators, mark=next(ref.marks)))
    except LocateError as exc:
        raise ResultUnavailable(str(exc)) from None
    core = text
    if before and core.startswith(before):
        core = core[len(before):]
    if after and core.endswith(after):
        core = core[: len(core) - len(after)]
    core = core.strip()
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        try:
            return _to_number(core, like)
        except ValueError:
            raise ResultUnavailable(f"the element now reads {text!r}, not a number") from None
    return core


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, path + (k,))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, path + (i,))]
    return [(path, value)]


def _set(container: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value


def _data_like(value: str) -> bool:
    return bool(re.search(r"\d", value))


# A parameter ({{name}}, group 1) or a page value ({{page:N}}, group 2), found in one pass.
RESULT_REF_RE = re.compile(f"{PLACEHOLDER_RE.pattern}|{PAGE_REF_RE.pattern}")


def render_result(template: Any, values: dict[str, Any], read: dict[int, Any]) -> Any:
    """The template with parameter values and page values put in literally, in one pass (never scanned
    again); a string that is only one reference becomes the typed value."""
    if isinstance(template, str):
        whole = RESULT_REF_RE.fullmatch(template.strip())
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        if whole and whole.group(2) is not None and int(whole.group(2)) in read:
            return read[int(whole.group(2))]

        def sub(m: re.Match[str]) -> str:
            if m.group(1) is not None:
                return as_text(values[m.group(1)]) if m.group(1) in values else m.group(0)
            n = int(m.group(2))
            return as_text(read[n]) if n in read else m.group(0)

        return RESULT_REF_RE.sub(sub, template)
    if isinstance(template, dict):
        return {k: render_result(v, values, read) for k, v in template.items()}
    if isinstance(template, list):
        return [render_result(v, values, read) for v in template]
    return template


def _strip_label(text: str, before: str, after: str) -> str | None:
    """`text` without the label around the value (compared in any case); None when the label changed."""
    folded = text.casefold()
    for b in dict.fromkeys((before, before.strip())):
        if folded.startswith(b.casefold()):
            text, folded = text[len(b):], folded[len(b):]
            break
    else:
        return None
    for a in dict.fromkeys((after, after.strip())):
        if folded.endswith(a.casefold()):
            return text[: len(text) - len(a)].strip()
    return None


async def read_page_value(page: Any, value: dict[str, Any], *, mark: int, ref: _Reference | None = None) -> Any:
    """A page value read again on `page` from the element that showed it, written as the agent wrote it.

    The element is found by its recorded locators; when the page's layout changed so that they no
    longer find it, by `ref`: the recorded final page opened again, where the element still showing
    the recorded text gives locators in today's layout. Either way the value is read on `page`.
    """
    example = value.get("example")
    locators = value.get("locators")
    if not isinstance(locators, dict):
        where = f"step {value['step']}'s page" if value.get("step") else "a page"
        raise ResultUnavailable(f"{example!r} was read on {where}, which a replay does not read again")
    try:
        text = await read_text(page, locators, mark=mark)
    except LocateError as exc:
        today = await _todays_locators(ref, value) if ref is not None else None
        if today is None:
            raise ResultUnavailable(f"{example!r} could not be read again: {exc}") from None
        try:
            text = await read_text(page, today, mark=next(ref.marks))  # type: ignore[union-attr]
        except LocateError:
            raise ResultUnavailable(f"{example!r} could not be read again: {exc}") from None
    return as_written(value, text)


def as_written(value: dict[str, Any], text: str) -> Any:
    """What an element shows now (`text`), as the agent wrote the recorded value: the label around it
    stripped, its case and its type; ResultUnavailable when the label changed or a number is not one."""
    example, text = value.get("example"), _norm(text)
    before, after = str(value.get("before") or ""), str(value.get("after") or "")
    core = _strip_label(text, before, after)
    if not core:
        label = " … ".join(x for x in (before.strip(), after.strip()) if x)
        raise ResultUnavailable(f"{example!r} could not be read again: its element now reads {text!r}"
                                + (f", without {label!r} around the value" if label else ""))
    kind = value.get("type")
    if kind in ("integer", "number"):
        try:
            return _to_number(core, 0 if kind == "integer" else 0.0)
        except ValueError:
            raise ResultUnavailable(f"{example!r} could not be read again: its element now reads {text!r}, "
                                    "not a number") from None
    case = value.get("case")
    return getattr(core, case)() if case in ("upper", "lower", "title") else core


async def _todays_locators(ref: _Reference, value: dict[str, Any]) -> dict[str, Any] | None:
    """Locators, in today's layout, of the element of the recorded final page that still shows the recorded text."""
    if ref.page is None and (ref.error is not None or not await ref.open()):
        return None
    shown = _norm(str(value.get("shown") or value.get("example") or ""))
    whole = _norm(f"{value.get('before') or ''}{shown}{value.get('after') or ''}")
    n = next((i for i, text in enumerate(ref.texts) if text == whole), None)
    if n is None:
        return None  # the recorded text is gone from that page too (its data changed): nothing to go by
    return await ref.locators(n)


async def _read_template(session: BrowserSession, template: Any, values: dict[str, Any],
                         page_values: list[dict[str, Any]], items: list[dict[str, Any]], ref: _Reference) -> Any:
    """The result: parameters substituted, every page value read again on the page the replay reached
    (values read from one item of a list together, inside one item)."""
    used: list[int] = []
    for leaf in _leaves(template):
        if isinstance(leaf[1], str):
            used += [int(n) for n in PAGE_REF_RE.findall(leaf[1]) if int(n) not in used]
    page = await session.ensure_page()
    for n in used:
        if n >= len(page_values) or not isinstance(page_values[n], dict):
            raise ResultUnavailable(f"the result refers to page value {n}, which the workflow does not describe")
    read: dict[int, Any] = {}
    for group, ns in _groups(page_values, used, items).items():
        read.update(await _read_group(page, items[group], [(n, page_values[n]) for n in ns], values, ref.marks))
    for n in sorted(set(used) - set(read)):
        read[n] = await read_page_value(page, page_values[n], mark=next(ref.marks), ref=ref)
    return render_result(template, values, read)


def _groups(page_values: list[dict[str, Any]], used: list[int], items: list[dict[str, Any]]) -> dict[int, list[int]]:
    """The page values used, by the item they were read from together (two or more, or one and the item's key)."""
    groups: dict[int, list[int]] = {}
    for n in sorted(used):
        place = page_values[n].get("item")
        if isinstance(place, dict) and isinstance(place.get("group"), int) and 0 <= place["group"] < len(items):
            groups.setdefault(place["group"], []).append(n)
    return {g: ns for g, ns in groups.items() if len(ns) >= 2 or items[g].get("keys")}


async def _read_group(page: Any, item: dict[str, Any], members: list[tuple[int, dict[str, Any]]],
                      values: dict[str, Any], marks: Iterator[int]) -> dict[int, Any]:
    """Page values read together from one item, read again inside one item of today's page."""
    keys = [{**{k: key.get(k) for k in ("path", "tag", "class", "id")}, "before": str(key.get("before") or ""),
             "after": str(key.get("after") or ""), "value": as_text(values[key["param"]])}
            for key in item.get("keys") or [] if isinstance(key, dict) and key.get("param") in values]
    try:
        texts = await read_item(page, item, [v for _n, v in members], keys, marks=marks)
    except ItemUnavailable as exc:
        shown = " and ".join(repr(v.get("example")) for _n, v in members)
        tag = (item.get("locators") or {}).get("tag") or "element"
        raise ResultUnavailable(f"the recorded run read {shown} from one item (a <{tag}>) of a list; on this page "
                                f"they cannot be read together: {exc}") from None
    return {n: as_written(value, text) for (n, value), text in zip(members, texts)}


async def derive_result(
    session: BrowserSession,
    params: dict[str, Any],
    values: dict[str, Any],
    ref_url: str | None,
    *,
    structured: bool,
    marks: Iterator[int],
    page_values: list[dict[str, Any]] | None = None,
    items: list[dict[str, Any]] | None = None,
    allowed_domains: list[str] | None = None,
    blocked_domains: list[str] | None = None,
) -> Any:
    """The replay's result: the recorded template with parameter values and page values read again.

    `page_values` are the `done`'s traced page values (None: a workflow recorded before them), `items` the
    items of a list several of them were read from together.
    """
    if structured and "data" not in params:
        raise ResultUnavailable("the workflow returns text but this run asks for JSON")
    template = params["data"] if structured else params.get("text", "")
    if not structured and not isinstance(template, str):
        template = as_text(template)
    ref = _Reference(session, ref_url, allowed_domains, blocked_domains, marks)
    try:
        if page_values is not None:
            return await _read_template(session, template, values, page_values, items or [], ref)
        page = await session.ensure_page()
        now = await _page_text(page)
        if structured:
            return await _derive_json(template, values, page, now, ref)
        return await _derive_text(template, values, page, now, ref)
    finally:
        await ref.close()


async def _derive_json(template: Any, values: dict[str, Any], page: Any, now: str, ref: _Reference) -> Any:
    result = render(template, values, typed=True)
    if not isinstance(result, (dict, list)):
        result = {"__root__": result}
        template = {"__root__": template}
        wrapped = True
    else:
        wrapped = False
    need = []
    for path, leaf in _leaves(template):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, str) and (PLACEHOLDER_RE.search(leaf) or not leaf.strip()):
            continue  # parameter values, substituted already
        if isinstance(leaf, (int, float, str)) and not _present(as_text(leaf), now):
            need.append((path, leaf))
    if need and await ref.open():
        for path, leaf in need:
            held = ref.element_holding(_norm(as_text(leaf)))
            if held is None:
                continue
            try:
                _set(result, path, await _read_again(ref, page, *held, like=leaf))
            except ResultUnavailable as exc:
                raise ResultUnavailable(f"the result's value {leaf!r} could not be read again: {exc}") from None
            need = [(p, v) for p, v in need if p != path]
    stale = [leaf for _p, leaf in need if _data_like(as_text(leaf))]
    if stale:
        why = f"; {ref.error}" if ref.error else ""
        raise ResultUnavailable(f"the result's value {stale[0]!r} is not on the final page and could not be read "
                                f"again{why}")
    return result["__root__"] if wrapped else result


async def _derive_text(template: str, values: dict[str, Any], page: Any, now: str, ref: _Reference) -> str:
    # Literal parts between placeholders: only these can hold page values.
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for m in PLACEHOLDER_RE.finditer(template):
        pieces.append((True, template[pos:m.start()]))
        pieces.append((False, m.group(0)))
        pos = m.end()
    pieces.append((True, template[pos:]))
    literal_parts = [p for is_lit, p in pieces if is_lit and p.strip()]
    if all(_norm(p) in now for p in literal_parts):
        return render(template, values)
    replaced: dict[int, list[tuple[int, int, Any]]] = {}
    if await ref.open():
        order = sorted(range(len(ref.texts)), key=lambda n: -len(ref.texts[n]))  # longest first
        for i, (is_lit, text) in enumerate(pieces):
            if not is_lit or not text.strip():
                continue
            spans: list[tuple[int, int, int, str, str]] = []
            # Element texts of the recorded page inside this part, longest first, not overlapping.
            for n in order:
                t = ref.texts[n]
                if len(t) < 2 or not re.search(r"\w", t):
                    continue
                for s, e in find_value(text, t, ignore_case=False):
                    if not any(s < e2 and s2 < e for s2, e2, *_ in spans):
                        spans.append((s, e, n, "", ""))
            # Numbers inside longer element texts ("Total: €10.98" holds "10.98").
            for m in _TOKEN_RE.finditer(text):
                s, e = m.start(), m.end()
                token = m.group(0).strip(".,;:!?")
                e = s + len(token)
                if any(s < e2 and s2 < e for s2, e2, *_ in spans) or _present(token, now):
                    continue
                held = ref.element_holding(token)
                if held is not None:
                    spans.append((s, e, held[0], held[1], held[2]))
            for s, e, n, before, after in sorted(spans):
                old = text[s:e]
                if _present(old, now):
                    continue  # the page still shows it: nothing to read again
                try:
                    new = await _read_again(ref, page, n, before, after, like=old)
                except ResultUnavailable as exc:
                    raise ResultUnavailable(f"the result's value {old!r} could not be read again: {exc}") from None
                replaced.setdefault(i, []).append((s, e, new))
    out = []
    for i, (is_lit, text) in enumerate(pieces):
        if not is_lit:
            out.append(render(text, values))
            continue
        for s, e, new in sorted(replaced.get(i, []), reverse=True):
            text = text[:s] + as_text(new) + text[e:]
        # A number the agent read off the page that is neither shown now nor read again is stale.
        original = [tok for tok in _TOKEN_RE.findall(pieces[i][1]) if tok.strip(".,;:!?")]
        for tok in original:
            tok = tok.strip(".,;:!?")
            covered = any(pieces[i][1][s:e] == tok or tok in pieces[i][1][s:e] for s, e, _ in replaced.get(i, []))
            if not covered and not _present(tok, now):
                why = f"; {ref.error}" if ref.error else ""
                raise ResultUnavailable(f"the result's value {tok!r} is not on the final page and could not be "
                                        f"read again{why}")
        out.append(text)
    return "".join(out)
