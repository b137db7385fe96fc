"""Several JAX processes as one run: T5X's multi-process flags, one voice, barriers, and what
happens when one process fails.

`start` joins the processes (`jax.distributed.initialize`) from T5X's flags (`--multiprocess_gpu
--coordinator_address=HOST:PORT --process_count=N --process_index=I`, ct5x's
`--initialization_timeout=S`), or from the environment when MULTIHOST=True (SLURM, TPU VM). CPU
hosts exchange data through JAX's gloo collectives, so the same flags run N processes on one
machine. Processes that do not all join within the timeout end with one line each.

One voice: process 0 alone prints progress and evaluation lines; the others send their standard
output to /dev/null (library notices included) and log warnings and errors only, each line
prefixed with their index.

Failure of one: a process that stops on an error tells the others through JAX's coordination
service, and every process exits with its exit code and one line, instead of waiting in the next
collective for a process that will never come. A process killed outright cannot say so; JAX's
coordination service notices its missing heartbeats (100 s) and aborts the others with its own
message. SIGTERM (a scheduler's preemption) is taken by JAX's preemption service: every process
reaches the same sync point, saves a checkpoint and stops.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any

import jax

from ct5x.errors import UserInputError
from ct5x.process_flags import ProcessFlags

# Exit code when the processes did not all join: bad input (flags or cluster), as elsewhere.
EXIT_NOT_JOINED = 2
# JAX's own join deadline comes this much later than ours, so ours ends with one line.
JAX_TIMEOUT_MARGIN_S = 30
FAILURE_KEY = "ct5x/failure"
FAILURE_SEEN_KEY = "ct5x/failure_seen"
POLL_S = 0.5
# How long process 0 (which hosts the coordination service) stays up for the others to read its
# failure.
FAILURE_GRACE_S = 10
# How long exit waits for the failure watcher's call into the client in flight to return.
WATCHER_JOIN_S = 10


def is_multiprocess() -> bool:
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    return jax.process_index() == 0


def say(text: str) -> None:
    """A progress or result line, from process 0 only."""
    if is_primary():
        print(text, flush=True)


def line_prefix() -> str:
    """'process I: ' in a multi-process run, so every warning and error names its process."""
    return f"process {jax.process_index()}: " if is_multiprocess() else ""


def barrier(name: str) -> None:
    """Waits until every process gets here (after process 0 writes what the others read)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def preemption_sync_point(execution: int) -> bool:
    """True, on every process at once, at the first execution after one of them got SIGTERM
    (JAX's preemption service takes the signal in a multi-process run); the loop then saves a
    checkpoint and stops, as T5X does. Called after every execution, counted from 1."""
    if not is_multiprocess():
        return False
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(execution)


def start(flags: ProcessFlags, command: str) -> None:
    """Joins the other processes (once per process), or does nothing for a single process."""
    if not flags.wanted or jax.distributed.is_initialized():
        return
    # Host (CPU) arrays of a multi-process run cross processes through gloo; without it XLA:CPU
    # has no cross-process collectives at all. Accelerator backends keep their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = flags.coordinator_address or "the coordinator the environment names"
    timeout = flags.initialization_timeout
    joined = threading.Event()

    def give_up() -> None:
        if not joined.wait(timeout):
            count = f"{flags.process_count} processes" if flags.process_count else "processes"
            _exit(EXIT_NOT_JOINED, f"{command}: error: the {count} did not all join at {where} "
                  f"within --initialization_timeout={timeout} s (check --process_count, "
                  "--process_index and --coordinator_address, and that every process started)")

    threading.Thread(target=give_up, daemon=True, name="ct5x-join-timeout").start()
    try:
        jax.distributed.initialize(flags.coordinator_address, flags.process_count,
                                   flags.process_index,
                                   initialization_timeout=timeout + JAX_TIMEOUT_MARGIN_S)
    except (ValueError, TypeError, RuntimeError) as error:
        raise UserInputError(f"cannot join the other processes at {where}: "
                             f"{(str(error).splitlines() or [''])[0]}") from None
    finally:
        joined.set()
    _one_voice()
    _watch_for_failures(command)
    if flags.process_count not in (None, jax.process_count()):
        raise UserInputError(f"--process_count={flags.process_count}, but {jax.process_count()} "
                             f"processes joined at {where}")
    say(f"{jax.process_count()} processes joined at {_coordinator()}: {jax.device_count()} "
        f"devices, {jax.local_device_count()} in each process")


def _one_voice() -> None:
    """Standard output of processes other than 0 goes to /dev/null; log lines are prefixed with
    the process index, and processes other than 0 log warnings and errors only."""
    prefix = line_prefix()
    for handler in logging.root.handlers:
        handler.setFormatter(logging.Formatter(prefix + "%(levelname)s %(name)s: %(message)s"))
    if is_primary():
        return
    logging.root.setLevel(max(logging.root.level, logging.WARNING))
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _client() -> Any:
    # JAX's coordination-service client (its key-value store), as jax.experimental.multihost_utils
    # and Orbax reach it: JAX has no public handle on it.
    from jax._src import distributed

    return distributed.global_state.client


def _coordinator() -> str:
    """The coordinator's address, given or found in the environment."""
    from jax._src import distributed

    return str(distributed.global_state.coordinator_address)


def _exit(code: int, line: str) -> None:
    """Prints one line to standard error and leaves at once: not through JAX's shutdown barrier,
    which would wait for processes that are stuck or gone."""
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def stop_every_process(code: int, line: str) -> None:
    """In a multi-process run: tells the others that this process stops (they exit with `code`
    too, naming it and `line`, e.g. "error: ...") and exits. Returns, doing nothing, in a single
    process."""
    if not is_multiprocess():
        return
    client = _client()
    with contextlib.suppress(Exception):  # another process announced its failure first
        client.key_value_set(FAILURE_KEY, f"{code}|{jax.process_index()}|{line}")
    if is_primary():  # the coordination service lives here: stay until the others have read
        deadline = time.monotonic() + FAILURE_GRACE_S
        while time.monotonic() < deadline and _seen(client) < jax.process_count() - 1:
            time.sleep(POLL_S / 5)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


def _seen(client: Any) -> int:
    try:
        return int(client.key_value_try_get(FAILURE_SEEN_KEY))
    except Exception:  # noqa: BLE001 -- not set yet
        return 0


def _watch_for_failures(command: str) -> None:
    """A thread that ends this process when another announces its failure. It is stopped and
    joined at exit: a daemon thread still inside a call into JAX's client when the interpreter
    finalizes is unwound by glibc through C++ frames that swallow the unwind, and the process
    aborts ("FATAL: exception not rethrown") after its work is done."""
    client, me = _client(), jax.process_index()
    stopping = threading.Event()

    def watch() -> None:
        while not stopping.is_set():
            try:
                announced = client.key_value_try_get(FAILURE_KEY)
            except Exception as error:  # noqa: BLE001
                if "NOT_FOUND" in str(error):
                    stopping.wait(POLL_S)
                    continue
                return  # the client is shut down: the run has ended
            code, process, line = announced.split("|", 2)
            if int(process) == me:
                return
            with contextlib.suppress(Exception):  # process 0 is gone already
                client.key_value_increment(FAILURE_SEEN_KEY, 1)
            _exit(int(code), f"{command}: process {me}: stopped: process {process} failed: "
                  f"{line}")

    watcher = threading.Thread(target=watch, daemon=True, name="ct5x-failure-watch")
    watcher.start()

    def stop_watching() -> None:
        stopping.set()
        watcher.join(WATCHER_JOIN_S)

    # Registered after jax.distributed.initialize, so it runs before JAX's own exit handler
    # shuts the client down (atexit runs last-registered first).
    atexit.register(stop_watching)
