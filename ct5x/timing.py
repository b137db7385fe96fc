"""Where a ct5x process's wall-clock time goes: start-up marks, phases and JAX's compilation.

`ct5x train` prints one line of it at the end of every run and appends the whole record to
MODEL_DIR/timings.jsonl; any ct5x command appends its record to the file that the environment
variable CT5X_TIMINGS names, when the process exits (benchmarks/fold.py reads those).

Compilation is what JAX reports through `jax.monitoring` (tracing, lowering to MLIR and XLA's
compilation, or the load of a program from the persistent compilation cache), attributed to the
phase in which it happened, so a phase's own time and its compilation can be told apart. A program
compiled on `ct5x.compile_ahead`'s background thread counts apart (`background_compile_seconds`);
the time a caller waits for one counts as compilation (its step `background_wait`), in the
caller's phase.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

TIMINGS_ENVIRONMENT = "CT5X_TIMINGS"
# jax._src.dispatch's events, by the step of compilation each times (spans of wall time, never
# nested in one another); the persistent compilation cache saves the last one only.
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
    BACKEND_COMPILE_EVENT: "xla",
}
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
WAIT_STEP = "background_wait"  # a caller waiting for a program compiled ahead


def process_start() -> float:
    """The wall-clock time (time.time()) at which this process started.

    Linux gives the start in clock ticks since boot (/proc/self/stat) and the time since boot to
    the hundredth of a second (/proc/uptime); elsewhere the import of this module stands in.
    """
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22, counted after the command name, which may itself hold spaces.
            started_ticks = int(stat.read().rpartition(")")[2].split()[19])
            since_boot = float(uptime.read().split()[0])
        return time.time() - since_boot + started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()


class Timeline:
    """Marks and phases of one process (or one run of a sweep), in seconds since `origin`."""

    def __init__(self, command: str, origin: float):
        self.command, self.origin = command, origin
        self.marks: dict[str, dict[str, float]] = {}
        self.phases: dict[str, dict[str, float]] = {}
        self.compile_seconds = 0.0
        self.background_compile_seconds = 0.0
        # JAX's steps on this thread, and the waits for programs compiling in the background.
        self.compile_by_step = dict.fromkeys([*COMPILE_EVENTS.values(), WAIT_STEP], 0.0)
        self.programs = 0
        self.cache_hits = 0
        self._open: list[str] = []

    def now(self) -> float:
        return time.time() - self.origin

    def mark(self, name: str) -> None:
        """The first time `name` is reached, and the compilation done before it."""
        if name not in self.marks:
            self.marks[name] = {"at": round(self.now(), 3),
                                "compile_before": round(self.compile_seconds, 3)}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the block's wall time (and the compilation inside it) to phase `name`."""
        record = self.phases.setdefault(
            name, {"seconds": 0.0, "count": 0, "first_start": round(self.now(), 3),
                   "compile_before": round(self.compile_seconds, 3), "compile_seconds": 0.0})
        start = time.time()
        self._open.append(name)
        try:
            yield
        finally:
            self._open.pop()
            record["seconds"] += time.time() - start
            record["count"] += 1
            record["last_end"] = round(self.now(), 3)

    def compiled(self, event: str, seconds: float, background: bool = False) -> None:
        self.programs += event == BACKEND_COMPILE_EVENT
        if background:
            self.background_compile_seconds += seconds
            return
        self._compiling(COMPILE_EVENTS[event], seconds)

    def waited_for_compilation(self, seconds: float) -> None:
        self._compiling(WAIT_STEP, seconds)

    def _compiling(self, step: str, seconds: float) -> None:
        self.compile_by_step[step] += seconds
        self.compile_seconds += seconds
        if self._open:
            self.phases[self._open[-1]]["compile_seconds"] += seconds

    def record(self) -> dict[str, Any]:
        """The whole timeline as one JSON-ready dict."""
        phases = {name: {key: round(value, 3) if isinstance(value, float) else value
                         for key, value in fields.items()}
                  for name, fields in self.phases.items()}
        return {"command": self.command, "process_start": round(self.origin, 3),
                "end": round(self.now(), 3), "marks": dict(self.marks), "phases": phases,
                "compile_seconds": round(self.compile_seconds, 3),
                "background_compile_seconds": round(self.background_compile_seconds, 3),
                "compile_by_step": {step: round(seconds, 3)
                                    for step, seconds in self.compile_by_step.items()},
                "programs_compiled": self.programs, "cache_hits": self.cache_hits}

    def summary(self) -> str:
        """One line for the console: start-up, first step, compilation and each phase."""
        parts = []
        if "training_start" in self.marks:
            parts.append(f"start-up {self.marks['training_start']['at']:.1f} s")
        if "first_step" in self.marks:
            parts.append(f"first step at {self.marks['first_step']['at']:.1f} s")
        hits = f", {self.cache_hits} from the compilation cache" if self.cache_hits else ""
        parts.append(f"compilation {self.compile_seconds:.1f} s ({self.programs} programs{hits})")
        parts += [f"{name.replace('_', ' ')} {fields['seconds']:.1f} s ({fields['count']}x)"
                  for name, fields in self.phases.items()]
        return "time: " + ", ".join(parts)


_current: Timeline | None = None
_listening = False
_thread = threading.local()  # .background: this thread compiles ahead of time


def _on_span(event: str, start: float, end: float, **_: Any) -> None:
    if _current is not None and event in COMPILE_EVENTS:
        _current.compiled(event, end - start, getattr(_thread, "background", False))


@contextlib.contextmanager
def in_background() -> Iterator[None]:
    """Compilation inside the block (on this thread) counts as done in the background."""
    _thread.background = True
    try:
        yield
    finally:
        _thread.background = False


@contextlib.contextmanager
def compile_wait() -> Iterator[None]:
    """The block's wall time counts as compilation: a caller waiting for a program compiling
    in the background."""
    start = time.time()
    try:
        yield
    finally:
        current().waited_for_compilation(time.time() - start)


def _on_event(event: str, **_: Any) -> None:
    if _current is not None and event == CACHE_HIT_EVENT:
        _current.cache_hits += 1


def _listen_to_jax() -> None:
    global _listening
    if not _listening:
        import jax.monitoring

        jax.monitoring.register_event_time_span_listener(_on_span)
        jax.monitoring.register_event_listener(_on_event)
        _listening = True


def begin(command: str) -> Timeline:
    """A new current timeline: from the process's start for its first one, else from now (the
    next run of a sweep). A current timeline on which nothing was recorded yet is kept."""
    global _current
    _listen_to_jax()
    if _current is not None and not (_current.marks or _current.phases):
        _current.command = command
    else:
        _current = Timeline(command, process_start() if _current is None else time.time())
    return _current


def current() -> Timeline:
    """The current timeline (one from the process's start if none was begun)."""
    return _current if _current is not None else begin("ct5x")


def phase(name: str) -> contextlib.AbstractContextManager:
    return current().phase(name)


def mark(name: str) -> None:
    current().mark(name)


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """One JSON line appended (records of several processes may share the file; in a bucket,
    `ct5x.storage` rewrites the object whole)."""
    from ct5x import storage

    storage.append_text(storage.path(path), json.dumps(record) + "\n")


def record_from_environment(command: str) -> None:
    """When CT5X_TIMINGS names a file, begin a timeline and append it there at exit."""
    path = os.environ.get(TIMINGS_ENVIRONMENT)
    if path and _current is None:
        begin(command)
        atexit.register(lambda: append_record(path, current().record()))
