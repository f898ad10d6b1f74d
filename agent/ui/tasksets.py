"""Task sets in the workbench: the Task sets section (list, open a version, edit, add or delete a task, download
JSONL, create a set) and the history's "Add to task set" (runs made into tasks, their suggested checks shown in
an editor before saving). Everything goes through `agent.experiments.tasksets.TaskSets`, as the routes do.

Like agent.ui.workflows, gradio is imported at module level and this module only by `build_ui`; no
`from __future__ import annotations`, as Gradio reads the handlers' annotations (`gr.SelectData`) as objects.
"""

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd

from agent.experiments.tasks import TaskError, parse_jsonl, to_jsonl, validate_task
from agent.experiments.tasksets import TaskSetConflict, TaskSets, UnknownTask, UnknownTaskSet
from agent.service.door import NotFound

SET_COLUMNS = ["name", "version", "tasks", "source", "last change", "updated (UTC)"]
TASK_COLUMNS = ["id", "title", "check", "prompt"]
MAX_RUNS = 100
PROBLEMS = (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict, NotFound)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else str(value or "")[:19]


def _problem(exc: Exception) -> str:
    return f"{exc.field}: {exc.message}" if isinstance(exc, TaskError) else str(exc)


def sets_frame(sets: list[dict[str, Any]]) -> Any:
    """The task sets table: one row per set, its latest version."""
    return pd.DataFrame([{
        "name": s["name"], "version": s["version"], "tasks": s["task_count"], "source": s["source"],
        "last change": f"{s['origin']}" + (f": {s['note']}" if s.get("note") else ""),
        "updated (UTC)": _when(s.get("updated_at"))} for s in sets], columns=SET_COLUMNS)


def tasks_frame(tasks: list[dict[str, Any]]) -> Any:
    """One version's tasks: id, title, check kind, prompt (shortened)."""
    rows = []
    for t in tasks:
        check = t.get("check") or {}
        kind = next((k for k in check if k not in ("tolerance", "provider", "model")), "by hand")
        prompt = " ".join(str(t.get("prompt") or "").split())
        rows.append({"id": t.get("id"), "title": t.get("title") or "", "check": kind,
                     "prompt": prompt if len(prompt) <= 100 else prompt[:99] + "…"})
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def render_set(found: dict[str, Any] | None) -> str:
    """A set's version shown: name, version of how many, where it comes from, the versions, a download link."""
    if not found:
        return '<div class="wb-taskset wb-empty">Select a task set in the table.</div>'
    name, version = str(found["name"]), int(found["version"])
    rows = "".join(
        f'<tr data-version="{int(v["version"])}"><td>v{int(v["version"])}</td><td>{_esc(_when(v["created_at"]))}</td>'
        f'<td>{_esc(v["origin"])}</td><td>{_esc(v.get("note") or "")}</td><td>{int(v["tasks"])}</td></tr>'
        for v in reversed(found["versions"]))
    link = f"api/tasksets/{_esc(name)}?format=jsonl&amp;version={version}"
    return (f'<div class="wb-taskset" data-name="{_esc(name)}" data-version="{version}">'
            f'<b>{_esc(name)}</b> · version {version} of {int(found["latest_version"])} · {_esc(found["source"])} · '
            f'{len(found["tasks"])} tasks · <a class="wb-taskset-download" href="{link}" '
            f'download="{_esc(name)}-v{version}.jsonl">Download JSONL</a>'
            '<table class="wb-versions"><tr><th>version</th><th>saved (UTC)</th><th>made by</th><th>what changed</th>'
            f'<th>tasks</th></tr>{rows}</table></div>')


def run_ids(text: str) -> list[int]:
    """Run ids from a box ("12, 15 17"); ValueError naming what is wrong."""
    found: list[int] = []
    for part in re.split(r"[\s,;]+", (text or "").strip()):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"Runs: {part!r} is not a run id; list ids like 12, 15")
        found.append(int(part))
    if not found:
        raise ValueError("Runs: select runs in the history (or type their ids) first")
    if len(found) > MAX_RUNS:
        raise ValueError(f"Runs: {len(found)} runs; add at most {MAX_RUNS} at once")
    return list(dict.fromkeys(found))


@dataclass
class TaskSetsSection:
    """The Task sets section's components; `name`, `task_id` hold what is opened."""

    table: Any
    refresh_btn: Any
    detail: Any
    version: Any
    tasks: Any
    editor: Any
    save_btn: Any
    add_btn: Any
    delete_btn: Any
    new_name: Any
    new_jsonl: Any
    create_btn: Any
    name: Any
    task_id: Any


@dataclass
class AddToSet:
    """The history's "Add to task set": the runs picked, the set, the suggested tasks to edit, save."""

    runs: Any
    target: Any
    suggest_btn: Any
    editor: Any
    notes: Any
    save_btn: Any


def build_tasksets() -> TaskSetsSection:
    """The Task sets section (inside an open gr.Blocks, under Experiments)."""
    with gr.Accordion("Task sets", open=False, elem_id="wb-tasksets"):
        gr.Markdown("The task sets kept in the workbench, bundled and yours. Select one to see a version of it; "
                    "select a task to edit its JSON. Every change is saved as a new version (experiments record "
                    "the version they ran; old versions stay readable). A bundled set becomes yours when you first "
                    "edit it.", elem_id="wb-tasksets-help")
        with gr.Row():
            refresh_btn = gr.Button("Refresh", elem_id="wb-tasksets-refresh", scale=0, min_width=100)
        table = gr.Dataframe(pd.DataFrame(columns=SET_COLUMNS), label="Task sets (latest version of each)",
                             interactive=False, wrap=True, max_height=260, elem_id="wb-tasksets-table")
        with gr.Row():
            version = gr.Dropdown([], value=None, label="Version", elem_id="wb-taskset-version", scale=0,
                                  min_width=140, allow_custom_value=True)
            detail = gr.HTML(render_set(None), elem_id="wb-taskset-detail")
        tasks = gr.Dataframe(pd.DataFrame(columns=TASK_COLUMNS), label="Tasks (select one to edit it)",
                             interactive=False, wrap=True, max_height=300, elem_id="wb-taskset-tasks")
        editor = gr.Code("", language="json", lines=8, label="Task (JSON)", elem_id="wb-taskset-task")
        with gr.Row():
            save_btn = gr.Button("Save task", variant="primary", elem_id="wb-taskset-save", interactive=False)
            add_btn = gr.Button("Add as a new task", elem_id="wb-taskset-add", interactive=False)
            delete_btn = gr.Button("Delete task", variant="stop", elem_id="wb-taskset-delete", interactive=False)
        with gr.Accordion("New task set", open=False, elem_id="wb-taskset-new"):
            new_name = gr.Textbox(label="Name of the new set", elem_id="wb-taskset-new-name",
                                  placeholder="e.g. checkout-regressions")
            new_jsonl = gr.Code("", language="json", lines=4, label="Its tasks (JSONL, one task per line)",
                                elem_id="wb-taskset-new-jsonl")
            create_btn = gr.Button("Create task set", elem_id="wb-taskset-create")
    return TaskSetsSection(table=table, refresh_btn=refresh_btn, detail=detail, version=version, tasks=tasks,
                           editor=editor, save_btn=save_btn, add_btn=add_btn, delete_btn=delete_btn,
                           new_name=new_name, new_jsonl=new_jsonl, create_btn=create_btn, name=gr.State(None),
                           task_id=gr.State(None))


def build_add_to_set() -> AddToSet:
    """The history's "Add to task set" (inside an open gr.Blocks, under the history table)."""
    with gr.Accordion("Add runs to a task set", open=False, elem_id="wb-add-to-set"):
        gr.Markdown("Select runs in the history (each selection adds or removes its id below), pick a task set or "
                    "type a new name, and press **Suggest tasks**: each run becomes a task (its prompt, start page "
                    "and result format) with a check suggested from its result when the run was right. Edit them, "
                    "then **Save to task set**.", elem_id="wb-add-help")
        with gr.Row():
            runs = gr.Textbox(label="Runs (ids)", elem_id="wb-add-runs", placeholder="e.g. 12, 15", scale=2)
            target = gr.Dropdown([], value=None, label="Task set (pick one, or type a new name)",
                                 allow_custom_value=True, elem_id="wb-add-set", scale=2)
            suggest_btn = gr.Button("Suggest tasks", elem_id="wb-add-suggest", scale=0, min_width=140)
        editor = gr.Code("", language="json", lines=6, label="Tasks to add (JSONL, one task per line)",
                         elem_id="wb-add-tasks")
        notes = gr.Markdown("", elem_id="wb-add-notes")
        save_btn = gr.Button("Save to task set", variant="primary", elem_id="wb-add-save")
    return AddToSet(runs=runs, target=target, suggest_btn=suggest_btn, editor=editor, notes=notes, save_btn=save_btn)


class TaskSetHandlers:
    """What the Task sets section and the history's "Add to task set" do, through TaskSets."""

    def __init__(self, sets: TaskSets) -> None:
        self.sets = sets

    async def names(self) -> Any:
        """The set names, for the boxes that pick one."""
        return gr.update(choices=[s["name"] for s in await self.sets.list_sets()])

    async def listing(self) -> Any:
        """The sets table."""
        found = await self.sets.list_sets()
        return gr.update(value=sets_frame(found), label=f"Task sets ({len(found)}; the latest version of each)")

    async def _shown(self, name: str, version: int | None = None) -> tuple[Any, ...]:
        """(detail, version box, tasks table) of a set's version."""
        found = await self.sets.get(name, version)
        choices = [str(v["version"]) for v in reversed(found["versions"])]
        return (render_set(found), gr.update(choices=choices, value=str(found["version"])),
                tasks_frame(found["tasks"]))

    async def open(self, evt: gr.SelectData) -> tuple[Any, ...]:
        """A set selected in the table: its latest version, no task opened yet."""
        name = str((evt.row_value or [""])[0])
        try:
            shown = await self._shown(name)
        except PROBLEMS as exc:
            gr.Warning(_problem(exc))
            return tuple(gr.skip() for _ in range(9))
        return (*shown, name, "", None, *_buttons(task=False, opened=True))

    async def pick_version(self, name: str | None, version: Any) -> tuple[Any, ...]:
        """Another version of the opened set picked."""
        if not name or not str(version or "").isdigit():
            return gr.skip(), gr.skip(), gr.skip()
        try:
            return await self._shown(name, int(version))
        except PROBLEMS as exc:
            gr.Warning(_problem(exc))
            return gr.skip(), gr.skip(), gr.skip()

    async def open_task(self, name: str | None, version: Any, evt: gr.SelectData) -> tuple[Any, ...]:
        """A task selected: its JSON in the editor (of the version shown)."""
        task_id = str((evt.row_value or [""])[0])
        try:
            found = await self.sets.get(str(name), int(version) if str(version or "").isdigit() else None)
        except PROBLEMS as exc:
            gr.Warning(_problem(exc))
            return gr.skip(), gr.skip(), *(gr.skip() for _ in range(3))
        task = next((t for t in found["tasks"] if t.get("id") == task_id), None)
        if task is None:
            return gr.skip(), gr.skip(), *(gr.skip() for _ in range(3))
        return json.dumps(task, indent=2, ensure_ascii=False), task_id, *_buttons(task=True, opened=True)

    async def _edited(self, name: str, found: dict[str, Any], said: str) -> tuple[Any, ...]:
        gr.Info(f"{said} '{name}' version {found['version']}.")
        return (await self.listing(), *await self._shown(name))

    async def save_task(self, name: str | None, task_id: str | None, text: str) -> tuple[Any, ...]:
        """The editor's JSON replaces the opened task (a new version of the set)."""
        if not name or not task_id:
            raise gr.Error("Select a task set and a task first.", print_exception=False)
        try:
            data = _object(text)
            found = await self.sets.put(name, task_id, validate_task({"id": task_id, **data}, field=""))
        except PROBLEMS as exc:
            raise gr.Error(_problem(exc), print_exception=False) from None
        return await self._edited(name, found, f"Saved task {task_id}:")

    async def add_task(self, name: str | None, text: str) -> tuple[Any, ...]:
        """The editor's JSON added as a new task (give it a new id)."""
        if not name:
            raise gr.Error("Select a task set first.", print_exception=False)
        try:
            found = await self.sets.add(name, [validate_task(_object(text), field="")])
        except PROBLEMS as exc:
            raise gr.Error(_problem(exc), print_exception=False) from None
        return await self._edited(name, found, "Added a task:")

    async def delete_task(self, name: str | None, task_id: str | None) -> tuple[Any, ...]:
        """The opened task removed (a new version; older versions keep it)."""
        if not name or not task_id:
            raise gr.Error("Select a task set and a task first.", print_exception=False)
        try:
            found = await self.sets.remove(name, task_id)
        except PROBLEMS as exc:
            raise gr.Error(_problem(exc), print_exception=False) from None
        return (*await self._edited(name, found, f"Deleted task {task_id}:"), "", None,
                *_buttons(task=False, opened=True))

    async def create(self, name: str, jsonl: str) -> tuple[Any, ...]:
        """A new set from the JSONL given; it opens."""
        try:
            found = await self.sets.create((name or "").strip(), parse_jsonl(jsonl or "", field="tasks"))
        except PROBLEMS as exc:
            raise gr.Error(_problem(exc), print_exception=False) from None
        gr.Info(f"Created task set '{found['name']}' (version 1, {len(found['tasks'])} tasks).")
        return (await self.listing(), *await self._shown(found["name"]), found["name"])

    # ------------------------------------------------------------ the history's "Add to task set"
    @staticmethod
    def pick_run(current: str, evt: gr.SelectData) -> Any:
        """A history row selected: its run id added to the box (removed if it was there)."""
        try:
            run_id = int((evt.row_value or [])[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip()
        ids = [p for p in re.split(r"[\s,;]+", current or "") if p]
        ids = [p for p in ids if p != str(run_id)] if str(run_id) in ids else [*ids, str(run_id)]
        return ", ".join(ids)

    async def suggest(self, runs: str, target: str | None) -> tuple[Any, ...]:
        """The runs as tasks (checks suggested from their results), in the editor as JSONL; the notes below."""
        try:
            ids = run_ids(runs)
            taken: set[str] = set()
            if target:
                try:
                    taken = {str(t.get("id")) for t in (await self.sets.get(target.strip()))["tasks"]}
                except UnknownTaskSet:
                    pass  # a new set
            tasks, notes = await self.sets.from_runs(ids, taken=taken)
        except ValueError as exc:  # run_ids, and TaskError (a ValueError)
            raise gr.Error(_problem(exc), print_exception=False) from None
        except NotFound as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        lines = [f"- **{_esc(n['task_id'])}** (run {int(n['from_run'])}): {_esc('; '.join(n['notes']))}"
                 for n in notes]
        return to_jsonl(tasks), "\n".join(lines)

    async def save_suggested(self, target: str | None, jsonl: str) -> tuple[Any, ...]:
        """The edited tasks added to the set (created when it is new)."""
        name = (target or "").strip()
        if not name:
            raise gr.Error("Task set: pick a set or type the name of a new one.", print_exception=False)
        try:
            tasks = parse_jsonl(jsonl or "", field="tasks")
            try:
                found = await self.sets.add(name, tasks)
                said = f"Added {len(tasks)} task{'s' if len(tasks) != 1 else ''} to '{name}'"
            except UnknownTaskSet:
                found = await self.sets.create(name, tasks, note="made from runs in the history")
                said = f"Created task set '{name}' with {len(tasks)} task{'s' if len(tasks) != 1 else ''}"
        except PROBLEMS as exc:
            raise gr.Error(_problem(exc), print_exception=False) from None
        gr.Info(f"{said} (version {found['version']}).")
        return f"✓ {said} (version {found['version']}): {', '.join(t.id for t in tasks)}", await self.names()


def _object(text: str) -> dict[str, Any]:
    """The editor's text as a JSON object; TaskError naming the fix."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise TaskError("task", f"is not valid JSON ({exc.msg} at line {exc.lineno}); edit the task's JSON") from None
    if not isinstance(data, dict):
        raise TaskError("task", "must be a JSON object with at least id and prompt")
    return data


def _buttons(*, task: bool, opened: bool) -> tuple[Any, Any, Any]:
    """(save, add, delete) enabled for what is open: a task (all three), a set (add only)."""
    return (gr.update(interactive=task), gr.update(interactive=opened), gr.update(interactive=task))


def wire_tasksets(ui: Any, h: TaskSetHandlers, s: TaskSetsSection, *, quiet: dict[str, Any]) -> Any:
    """Connect the Task sets section; the event of a set created (for the boxes that offer the sets)."""
    shown = [s.detail, s.version, s.tasks]
    buttons = [s.save_btn, s.add_btn, s.delete_btn]
    ui.load(h.listing, None, [s.table], **quiet)
    s.refresh_btn.click(h.listing, None, [s.table], **quiet)
    s.table.select(h.open, None, [*shown, s.name, s.editor, s.task_id, *buttons], **quiet)
    s.version.input(h.pick_version, [s.name, s.version], shown, **quiet)
    s.tasks.select(h.open_task, [s.name, s.version], [s.editor, s.task_id, *buttons], **quiet)
    s.save_btn.click(h.save_task, [s.name, s.task_id, s.editor], [s.table, *shown], **quiet)
    s.add_btn.click(h.add_task, [s.name, s.editor], [s.table, *shown], **quiet)
    s.delete_btn.click(h.delete_task, [s.name, s.task_id], [s.table, *shown, s.editor, s.task_id, *buttons],
                       **quiet)
    return s.create_btn.click(h.create, [s.new_name, s.new_jsonl], [s.table, *shown, s.name], **quiet)


def wire_add_to_set(ui: Any, h: TaskSetHandlers, a: AddToSet, table: Any, *, quiet: dict[str, Any]) -> Any:
    """Connect the history's "Add to task set" (`table`: the history table, whose selections pick runs); the event
    of tasks saved (a set may be new)."""
    ui.load(h.names, None, [a.target], **quiet)
    table.select(h.pick_run, [a.runs], [a.runs], **quiet)
    a.suggest_btn.click(h.suggest, [a.runs, a.target], [a.editor, a.notes], **quiet)
    return a.save_btn.click(h.save_suggested, [a.target, a.editor], [a.notes, a.target], **quiet)


__all__ = ["AddToSet", "TaskSetHandlers", "TaskSetsSection", "build_add_to_set", "build_tasksets",
           "render_set", "run_ids", "sets_frame", "tasks_frame", "wire_add_to_set", "wire_tasksets"]
