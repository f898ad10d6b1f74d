"""Task sets kept in the run log: named, versioned, edited task by task, and tasks made from runs.

`TaskSets(service, base_url=...)` is what the routes, the UI and the experiment runner use, all through
the run service. Every edit (create, replace, add, edit, remove) makes a new version; old versions stay
readable, and an experiment records the version it ran.

Bundled sets (data/tasksets/*.jsonl, and miniwob when installed) appear beside the stored ones: the first
time one is read (listed, opened, run or edited) its file is copied into the log as its version 1, and
while nobody edits it a changed file becomes its next version. The first edit makes it yours: from then
on it changes only through edits (PUT its tasks to take a newer file's).

A task from a run takes the run's prompt, start URL, result format and schema (and max_steps); when the
run is judged right (its experiment cell passed, or, outside an experiment, it succeeded) it gets a check
suggested from its result (agent.experiments.suggest), which passes on the run itself.

Errors: `TaskError` (422: field and fix), `UnknownTaskSet` (404), `TaskSetConflict` (409).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.experiments.suggest import suggest_check
from agent.experiments.tasks import (
    Task,
    TaskError,
    as_json,
    bundled_sets,
    check_set_name,
    load_bundled,
    parse_tasks,
    validate_task,
)
from agent.log.errors import VersionConflict
from agent.log.protocol import StoredTask
from agent.service.door import NotFound

if TYPE_CHECKING:
    from agent.service.runs import RunService

__all__ = ["EDIT_ATTEMPTS", "TaskSetConflict", "TaskSets", "UnknownTask", "UnknownTaskSet", "ordered", "stored"]

EDIT_ATTEMPTS = 3  # an edit that raced another is redone on the newer version this many times
MAX_FROM_RUNS = 100
TITLE_CHARS = 80


class UnknownTaskSet(LookupError):
    """No task set of that name (`field` "name"), or no such version of it ("version"); the message lists what
    there is."""

    def __init__(self, message: str, *, field: str = "name") -> None:
        super().__init__(message)
        self.field = field


class UnknownTask(LookupError):
    """The task set has no task of that id; the message lists its ids."""


class TaskSetConflict(RuntimeError):
    """The edit cannot be made as asked (the name is taken, or the set kept changing under it)."""


def stored(task: Task) -> StoredTask:
    """A task as the log keeps it."""
    return StoredTask(task.id, task.check.kind if task.check else None, as_json(task))


def ordered(task: dict[str, Any]) -> dict[str, Any]:
    """A stored task's JSON with its fields in a task file's order (id and title first, then as Task has them)."""
    order: dict[str, int] = {}
    for n, name in enumerate(("id", "title", *Task.model_fields)):
        order.setdefault(name, n)
    return dict(sorted(task.items(), key=lambda kv: order.get(kv[0], len(order))))


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "version": row["version"], "task_count": row["tasks"], "source": row["source"],
            "origin": row["origin"], "note": row["note"], "version_count": row["versions"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


class TaskSets:
    """Task sets through the run service: list, read, create, replace, edit task by task, tasks from runs."""

    def __init__(self, service: RunService, *, base_url: str = "") -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._synced: set[str] = set()
        self._sync_lock = asyncio.Lock()

    # ------------------------------------------------------------ reading
    async def _sync(self, names: list[str]) -> None:
        """Copy bundled sets into the log, or follow their files while unedited (once per process)."""
        todo = [n for n in names if n not in self._synced and n in bundled_sets()]
        if not todo:
            return
        async with self._sync_lock:
            for name in todo:
                if name in self._synced:
                    continue
                tasks = await asyncio.to_thread(load_bundled, name)
                await self.service.sync_bundled_task_set(name, [stored(t) for t in tasks])
                self._synced.add(name)

    async def list_sets(self) -> list[dict[str, Any]]:
        """Every set, bundled and stored, with its latest version's summary, by name."""
        await self._sync(bundled_sets())
        return [_summary(r) for r in await self.service.list_task_sets()]

    async def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        """One version of a set (the latest by default): its summary, tasks and every version's; UnknownTaskSet."""
        await self._sync([name])
        found = await self.service.get_task_set(name, version)
        if found is None:
            current = await self.service.get_task_set(name)
            if current is not None:
                raise UnknownTaskSet(f"task set {name!r} has no version {version}; it has versions 1 to "
                                     f"{current['latest_version']}", field="version")
            raise UnknownTaskSet(await self._unknown(name))
        return {**found, "tasks": [ordered(t) for t in found["tasks"]]}

    async def _unknown(self, name: str) -> str:
        names = sorted({r["name"] for r in await self.service.list_task_sets()} | set(bundled_sets()))
        return f"unknown task set {name!r}; known ones: {', '.join(names) or '(none)'}"

    async def tasks(self, name: str, version: int | None = None) -> tuple[int, list[Task]]:
        """(version, tasks) of a set, for an experiment; TaskError naming task_set or task_set_version."""
        try:
            found = await self.get(name, version)
        except UnknownTaskSet as exc:
            raise TaskError("task_set_version" if exc.field == "version" else "task_set", str(exc)) from None
        return int(found["version"]), parse_tasks(found["tasks"], field=f"task_set {name}")

    # ------------------------------------------------------------ writing
    async def create(self, name: str, tasks: list[Task], *, note: str | None = None) -> dict[str, Any]:
        """A new set (version 1); TaskSetConflict when the name is taken (a bundled one too)."""
        check_set_name(name)
        await self._sync([name])
        version = await self.service.create_task_set(name, [stored(t) for t in tasks], note=note)
        if version is None:
            raise TaskSetConflict(f"a task set named {name!r} exists; add tasks with POST /api/tasksets/{name}/tasks, "
                                  f"replace them with PUT /api/tasksets/{name}, or choose another name")
        return await self.get(name, version)

    async def replace(self, name: str, tasks: list[Task], *, note: str | None = None) -> dict[str, Any]:
        """The set's next version holds exactly these tasks."""
        return await self._edit(name, lambda _old: tasks, "replaced", note or f"{len(tasks)} tasks")

    async def add(self, name: str, tasks: list[Task], *, note: str | None = None) -> dict[str, Any]:
        """The set's next version with these tasks added at the end; TaskError when an id is taken."""
        def change(old: list[Task]) -> list[Task]:
            ids = {t.id for t in old}
            for n, task in enumerate(tasks):
                if task.id in ids:
                    raise TaskError(f"tasks[{n}].id", f"{task.id!r} is already a task of {name!r}; edit it with "
                                                      f"PUT /api/tasksets/{name}/tasks/{task.id}, or give another id")
            return [*old, *tasks]

        return await self._edit(name, change, "added", note or f"added {', '.join(t.id for t in tasks)}")

    async def put(self, name: str, task_id: str, task: Task) -> dict[str, Any]:
        """The set's next version with task `task_id` replaced by `task` (which may take another, free id)."""
        note = f"edited {task_id}" + (f" (now {task.id})" if task.id != task_id else "")
        return await self._edit(name, lambda old: self._swap(name, old, task_id, task), "edited", note)

    async def patch(self, name: str, task_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The set's next version with these fields of task `task_id` changed (a field set to null removed)."""
        def change(old: list[Task]) -> list[Task]:
            current = as_json(old[self._index(name, old, task_id)])
            merged = {k: v for k, v in {**current, **fields}.items() if v is not None}
            return self._swap(name, old, task_id, validate_task(merged, field=""))

        return await self._edit(name, change, "edited", f"edited {task_id} ({', '.join(sorted(fields))})")

    async def remove(self, name: str, task_id: str) -> dict[str, Any]:
        """The set's next version without task `task_id`; a set keeps at least one task."""
        def change(old: list[Task]) -> list[Task]:
            self._index(name, old, task_id)
            if len(old) == 1:
                raise TaskError("task_id", f"{task_id!r} is the last task of {name!r}; a set keeps at least one "
                                           "task: add another first")
            return [t for t in old if t.id != task_id]

        return await self._edit(name, change, "removed", f"removed {task_id}")

    def _swap(self, name: str, old: list[Task], task_id: str, task: Task) -> list[Task]:
        """`old` with task `task_id` replaced by `task`; TaskError when `task` takes the id of another task."""
        index = self._index(name, old, task_id)
        if task.id != task_id and any(t.id == task.id for t in old):
            raise TaskError("id", f"{task.id!r} is another task of {name!r}; keep {task_id!r} or pick a free id")
        return [task if n == index else t for n, t in enumerate(old)]

    @staticmethod
    def _index(name: str, tasks: list[Task], task_id: str) -> int:
        for n, task in enumerate(tasks):
            if task.id == task_id:
                return n
        shown = ", ".join(t.id for t in tasks[:20]) + (", ..." if len(tasks) > 20 else "")
        raise UnknownTask(f"task set {name!r} has no task {task_id!r}; its tasks: {shown}")

    async def _edit(self, name: str, change: Callable[[list[Task]], list[Task]], origin: str,
                    note: str) -> dict[str, Any]:
        """Apply `change` to the latest version and store the result as the next one; an edit that raced
        another is redone on the newer version (bounded)."""
        for _attempt in range(EDIT_ATTEMPTS):
            current = await self.get(name)
            old = parse_tasks(current["tasks"], field=f"task set {name}")
            new = change(old)
            try:
                version = await self.service.add_task_set_version(
                    name, [stored(t) for t in new], origin=origin, note=note, base_version=int(current["version"]))
            except VersionConflict:
                continue
            if version is None:
                raise UnknownTaskSet(await self._unknown(name))
            return await self.get(name, version)
        raise TaskSetConflict(f"task set {name!r} kept changing while this edit was made ({EDIT_ATTEMPTS} tries); "
                              "try again")

    # ------------------------------------------------------------ tasks from runs
    async def from_run(self, run_id: int, overrides: dict[str, Any] | None = None, *,
                       taken: set[str] | None = None) -> tuple[Task, list[str]]:
        """A task made of run `run_id` (fields in `overrides` win, a `check` too), and notes on its check;
        NotFound for an unknown run, TaskError for one still running or a bad override."""
        response = await self.service.aget(run_id)
        request = await self.service.run_request(run_id) if response is not None else None
        if response is None or request is None:
            raise NotFound("run", run_id)
        if response.status == "in_progress":
            raise TaskError("from_run", f"run {run_id} is still running; make a task of it once it has ended")
        fields: dict[str, Any] = {
            "id": _free_id(f"run-{run_id}", taken or set()), "title": _title(request.prompt),
            "prompt": self._portable(request.prompt), "response_format": request.response_format}
        if request.start_url:
            fields["start_url"] = self._portable(request.start_url)
        if request.json_schema is not None:
            fields["json_schema"] = request.json_schema
        if request.max_steps is not None:
            fields["max_steps"] = request.max_steps
        overrides = dict(overrides or {})
        notes: list[str] = []
        if "check" in overrides:
            notes.append("the check given")
        else:
            right, why = await self._judged_right(run_id, response.status)
            if right:
                suggestion = suggest_check(response.result, response_format=request.response_format)
                if suggestion.check is not None:
                    fields["check"] = suggestion.check.as_json()
                notes += [f"suggested because {why}", *suggestion.notes]
            else:
                notes.append(f"no check suggested: {why}; write the check (a task without one is graded by hand)")
        return validate_task({**fields, **overrides}, field=""), notes

    async def _judged_right(self, run_id: int, status: str) -> tuple[bool, str]:
        """Whether the run's answer is right, and why we think so: its experiment cell's grade, else its status."""
        cell = await self.service.cell_of_run(run_id)
        if cell is not None and cell.get("passed") is not None:
            graded = f"experiment {cell['experiment_id']} graded it {'passed' if cell['passed'] else 'failed'}"
            return bool(cell["passed"]), graded
        if status == "success":
            return True, "the run succeeded"
        return False, f"the run ended as {status}"

    def _portable(self, text: str) -> str:
        """The workbench's own address as {BASE_URL}: the task runs wherever the workbench is served."""
        return text.replace(self.base_url, "{BASE_URL}") if self.base_url else text

    async def from_runs(self, run_ids: list[int], *, taken: set[str]) -> tuple[list[Task], list[dict[str, Any]]]:
        """Tasks from several runs (ids kept unique against `taken`), and per task its notes."""
        if not run_ids or len(run_ids) > MAX_FROM_RUNS:
            raise TaskError("from_runs", f"give 1 to {MAX_FROM_RUNS} run ids, e.g. [12, 15]")
        tasks: list[Task] = []
        notes: list[dict[str, Any]] = []
        seen = set(taken)
        for n, run_id in enumerate(run_ids):
            try:
                task, said = await self.from_run(run_id, taken=seen)
            except TaskError as exc:
                raise TaskError(f"from_runs[{n}]", exc.message) from None
            seen.add(task.id)
            tasks.append(task)
            notes.append({"task_id": task.id, "from_run": run_id, "notes": said})
        return tasks, notes


def _free_id(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def _title(prompt: str) -> str:
    line = re.sub(r"\s+", " ", prompt).strip()
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "…"
