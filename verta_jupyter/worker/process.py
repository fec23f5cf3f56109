"""Start a worker process and talk to it over its stdin/stdout, with deadlines (the kernel side).

The worker runs in its own session (POSIX) or process group (Windows), in a fresh temporary
folder, under `python -I`; stderr is drained by a thread into a bounded buffer, so a model
printing megabytes never blocks and a crash still leaves its last words.

Every OS-specific fast path has a portable twin, chosen by capability (and forced everywhere by
VERTA_JUPYTER_PORTABLE=1, so the twins are tested on Linux too):
- waiting on the pipes: non-blocking fds and `select.poll` where pipes can be polled (POSIX);
  else one reader and one writer thread per worker (Windows cannot select() on pipes);
- stopping the model's whole process tree: psutil walks the tree on every OS (and finds
  children that left the session); on POSIX `killpg` also stops the session, which holds
  children whose parent already exited;
- the memory limit: setrlimit in the worker (Linux); else a psutil watchdog (`limits`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .limits import MemoryWatchdog, portable, psutil_or_none, rlimit_spec
from .protocol import FRAME_MAX, HEADER, decode
from .scratch import remove_scratch, scratch_dir

# The child imports exactly the verta_jupyter that started it, whatever the other interpreter has
# installed, without putting this package's parent folder (maybe a whole site-packages built for
# another Python) on the child's sys.path.
_BOOTSTRAP = """import importlib.util, sys
spec = importlib.util.spec_from_file_location("verta_jupyter", %r, submodule_search_locations=[%r])
package = importlib.util.module_from_spec(spec)
sys.modules["verta_jupyter"] = package
spec.loader.exec_module(package)
from verta_jupyter.worker.__main__ import main
sys.exit(main(sys.argv[1:]))
"""
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
# isolated mode: no user site, no PYTHON* variables honoured, no current folder on sys.path
_ISOLATED = ("-I", "-c")
_STDERR_KEEP = 64 * 1024  # enough for a faulthandler dump; a model printing megabytes is fine
_ENVELOPE = 1 << 20  # room for a reply's fields around the output
# The smallest pipe buffer among the OSes (Windows' default); a request is sent only when the
# worker has answered the last one, so the pipe is empty and a write this small cannot block.
_PIPE_BUFFER = 4096
# the worker process's own files: faulthandler lists their frames under the model's
_WORKER_FILES = tuple(str(Path(__file__).resolve().with_name(name))
                      for name in ("__main__.py", "protocol.py"))


def child_command(python: str, arguments: list[str]) -> list[str]:
    """The command line of every fresh process: isolated mode (no user site, no PYTHON* variables,
    no current folder on sys.path), this verta_jupyter, the worker's `arguments`."""
    init = str(_PACKAGE_DIR / "__init__.py")
    return [python, *_ISOLATED, _BOOTSTRAP % (init, str(_PACKAGE_DIR)), *arguments]


def child_environment() -> dict[str, str]:
    """The environment of every fresh process: ours without PYTHON* variables, which would let the
    notebook's interpreter settings (PYTHONPATH, PYTHONSTARTUP, ...) leak into the proof."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def run_isolated(python: str, script: str, *, timeout: float):
    """Run a short `script` under `python` the way every fresh process runs (isolated mode, our
    environment without PYTHON* variables, no stdin); returns the CompletedProcess (text)."""
    import subprocess

    return subprocess.run([python, *_ISOLATED, script], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=child_environment())


class Timeout(Exception):
    """The deadline passed before the worker read the request or answered it."""


class Gone(Exception):
    """The worker's pipes closed: it exited or was killed (or broke the protocol: the reason)."""


class WorkerProcess:
    """One running worker: the process (its own session/group), its pipes, a stderr drain.

    It starts without a package (a clean interpreter that has imported only the worker) and is
    told which package to serve by `assign`: so a worker can be started ahead of need (a spare,
    see `spares`) and the start of a proof becomes a message.
    """

    def __init__(self, python: str, *, memory_limit: int | None = None,
                 message_limit: int | None = None):
        import collections
        import subprocess
        import threading

        self.cwd = scratch_dir("worker")
        self.python, self.message_limit = python, message_limit
        self.memory_limit, self._killed = memory_limit, False
        self.environment = child_environment()
        rlimit = rlimit_spec(memory_limit)
        self.memory_enforcement = ("rlimit" if rlimit else "watchdog" if psutil_or_none()
                                   else None) if memory_limit else None
        arguments = ["--framed"]
        if rlimit:
            arguments += ["--rlimit", rlimit]
        if message_limit:
            arguments += ["--message-limit", str(message_limit)]
        try:
            self.popen = subprocess.Popen(child_command(python, arguments), cwd=self.cwd,
                                          env=self.environment, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          bufsize=0, **_own_group())
        except BaseException:  # e.g. no such interpreter: leave no folder behind
            remove_scratch(self.cwd)
            raise
        try:
            # a reply may carry the whole output plus a small envelope (traceback, timings)
            frame_limit = (message_limit or FRAME_MAX) + _ENVELOPE
            pipes = _ThreadedPipes if portable() or not _can_poll() else _PolledPipes
            self.pipes = pipes(self.popen.stdin.fileno(), self.popen.stdout.fileno(), frame_limit)
            self.stderr: collections.deque[bytes] = collections.deque()
            self.drain = threading.Thread(target=self._drain, name="vj-worker-stderr",
                                          daemon=True)
            self.drain.start()
            self.watchdog = (MemoryWatchdog(self.popen.pid, memory_limit, self.kill)
                             if self.memory_enforcement == "watchdog" else None)
        except BaseException:  # e.g. Ctrl-C right now: no orphan worker, no folder
            self.popen.kill()
            self.popen.wait()
            remove_scratch(self.cwd)
            raise

    def assign(self, package_dir: Path, artifacts: dict, use_pickle: bool, digest: str,
               deadline: float) -> None:
        """Tell the worker which package to build (its first frame); the reply is its hello.
        `digest` is the package the caller checked: the worker builds that one or none."""
        job = json.dumps({"package": str(package_dir), "artifacts": artifacts,
                          "use_pickle": use_pickle, "digest": digest}).encode()
        self.send(HEADER.pack(len(job)) + job, deadline)

    def matches(self, python: str, memory_limit: int | None, message_limit: int | None) -> bool:
        """Whether this unassigned worker is what a new start with these settings would make:
        same interpreter and limits, still alive, and the environment unchanged since it began."""
        return (self.python == python and self.memory_limit == memory_limit
                and self.message_limit == message_limit and self.popen.poll() is None
                and self.environment == child_environment())

    def _drain(self) -> None:
        fd, kept = self.popen.stderr.fileno(), 0
        while chunk := os.read(fd, 65536):
            self.stderr.append(chunk)
            kept += len(chunk)
            while kept > _STDERR_KEEP and len(self.stderr) > 1:
                kept -= len(self.stderr.popleft())

    def stderr_text(self) -> str:
        self.drain.join(timeout=2.0)
        return b"".join(self.stderr)[-_STDERR_KEEP:].decode(errors="replace")

    @property
    def memory_exceeded(self) -> bool:
        """Whether the watchdog stopped the worker for using more than its memory limit."""
        return self.watchdog is not None and self.watchdog.exceeded

    def send(self, payload: bytes, deadline: float) -> None:
        self.pipes.send(payload, deadline)

    def receive(self, deadline: float) -> dict:
        """The next reply; Undecodable if its JSON cannot be read here (still in step)."""
        return decode(self.pipes.receive(deadline))

    def exit_description(self) -> str:
        import signal
        import subprocess

        try:
            code = self.popen.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.stop()
            return "stopped answering (killed)"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def kill(self) -> None:
        """Kill the worker and every process it started (idempotent, any thread)."""
        if self._killed:
            return
        self._killed = True
        family = _freeze_tree(self.popen.pid)  # psutil: works everywhere, sees setsid children
        if hasattr(os, "killpg") and (not portable() or family is None):
            import signal

            try:  # the session too: it holds children whose parent has already exited
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif family is None and os.name == "nt":  # no psutil: Windows' own tree kill
            import subprocess

            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.popen.pid)],
                           capture_output=True, timeout=30, check=False)
        for member in family or ():
            try:
                member.kill()
            except Exception:  # noqa: BLE001 - psutil.Error: already gone or not ours
                pass
        try:
            self.popen.kill()  # whatever happened above, the worker itself goes
        except OSError:
            pass

    def stop(self) -> None:
        """Kill, reap, close the pipes, remove the worker's folder."""
        self.kill()
        self.popen.wait()
        if self.watchdog is not None:
            self.watchdog.close()
        self.pipes.close()
        for stream in (self.popen.stdin, self.popen.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.drain.join(timeout=2.0)
        self.popen.stderr.close()
        remove_scratch(self.cwd)


def _own_group() -> dict:
    """Popen arguments that put the worker in its own session (POSIX) or process group
    (Windows): a Ctrl-C meant for the kernel does not reach it, and a timeout can stop it whole."""
    import subprocess

    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def _freeze_tree(pid: int) -> list | None:
    """The worker (suspended, so it cannot start more children) and all its descendants;
    None without psutil."""
    psutil = psutil_or_none()
    if psutil is None:
        return None
    try:
        root = psutil.Process(pid)
        try:
            root.suspend()
        except psutil.Error:
            pass
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _can_poll() -> bool:
    import select

    return os.name == "posix" and hasattr(select, "poll")


class _PolledPipes:
    """POSIX: non-blocking pipe fds, waited on with poll (no thread hand-off per message)."""

    def __init__(self, write_fd: int, read_fd: int, frame_limit: int):
        import select

        self.write_fd, self.read_fd, self.frame_limit = write_fd, read_fd, frame_limit
        os.set_blocking(write_fd, False)
        os.set_blocking(read_fd, False)
        self._readable, self._writable = select.poll(), select.poll()
        self._readable.register(read_fd, select.POLLIN)
        self._writable.register(write_fd, select.POLLOUT)

    def send(self, payload: bytes, deadline: float) -> None:
        view = memoryview(payload)
        while view:
            try:
                view = view[os.write(self.write_fd, view):]
            except BlockingIOError:
                _wait(self._writable, deadline)
            except OSError:  # BrokenPipeError and friends: the worker is gone
                raise Gone() from None

    def receive(self, deadline: float) -> bytes:
        size = HEADER.unpack(self._read(HEADER.size, deadline))[0]
        if size > self.frame_limit:
            raise Gone(f"sent a reply of {size} bytes, past the message limit")
        return self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                chunk = os.read(self.read_fd, min(size - len(chunks), 1 << 22))
            except BlockingIOError:
                _wait(self._readable, deadline)
                continue
            if not chunk:
                raise Gone()
            chunks += chunk
        return bytes(chunks)

    def close(self) -> None:
        pass


def _wait(poller, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise Timeout()


class _ThreadedPipes:
    """Portable: a reader thread turns the worker's stdout into whole frames on a queue, a
    writer thread writes requests; the caller waits on a queue or an event with its deadline.
    Works on pipes on every OS (Windows cannot poll pipes)."""

    _SLICE = 0.1  # wait in short slices so a Ctrl-C (interrupt kernel) is seen promptly

    def __init__(self, write_fd: int, read_fd: int, frame_limit: int):
        import queue
        import threading

        self.write_fd, self.read_fd, self.frame_limit = write_fd, read_fd, frame_limit
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for target, name in ((self._read_frames, "vj-worker-read"),
                             (self._write_requests, "vj-worker-write")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def send(self, payload: bytes, deadline: float) -> None:
        import threading

        if len(payload) <= _PIPE_BUFFER:  # fits the (empty) pipe: cannot block, no hand-off
            try:
                written = os.write(self.write_fd, payload)
            except OSError:
                raise Gone() from None
            if written == len(payload):
                return
            payload = payload[written:]
        done = threading.Event()
        outcome: list = []
        self._requests.put((payload, done, outcome))
        while not done.wait(min(self._SLICE, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                raise Timeout()
        if outcome:
            raise Gone()

    def receive(self, deadline: float) -> bytes:
        import queue

        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout()
            try:
                frame = self._replies.get(timeout=min(self._SLICE, remaining))
            except queue.Empty:
                continue
            if isinstance(frame, Gone):
                self._replies.put(frame)  # every later call sees it too
                raise frame
            return frame

    def _read_frames(self) -> None:
        while True:
            header = _read_exact(self.read_fd, HEADER.size)
            if header is None:
                break
            size = HEADER.unpack(header)[0]
            if size > self.frame_limit:
                self._replies.put(Gone(f"sent a reply of {size} bytes, past the message limit"))
                return
            body = _read_exact(self.read_fd, size)
            if body is None:
                break
            self._replies.put(body)
        self._replies.put(Gone())

    def _write_requests(self) -> None:
        while (item := self._requests.get()) is not None:
            payload, done, outcome = item
            view = memoryview(payload)
            try:
                while view:
                    view = view[os.write(self.write_fd, view):]
            except OSError:
                outcome.append("gone")
            done.set()

    def close(self) -> None:
        self._requests.put(None)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = os.read(fd, min(size - len(chunks), 1 << 22))
        except OSError:
            return None
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def model_stack(stderr: str) -> str:
    """The model's last words from a dead worker's stderr: the faulthandler dump if there is
    one (else the last 30 lines), without the worker's own frames."""
    fatal = stderr.find("Fatal Python error")
    trace = stderr[fatal:] if fatal >= 0 else "\n".join(stderr.splitlines()[-30:])
    return "\n".join(line for line in trace.splitlines()
                     if not any(f in line for f in _WORKER_FILES) and 'File "<string>"' not in line)
