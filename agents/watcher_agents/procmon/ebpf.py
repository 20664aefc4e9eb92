"""The eBPF tracer (a ``tracer.Tracer``): compiles bpf_common.c and one small program per concern
(bpf_stderr.c when stderr is captured, bpf_exec.c, bpf_chdir.c, bpf_exit.c) with bcc, attaches them to
tracepoints only (no kprobes), and turns raw events into ``ExecEvent`` / ``ExitEvent`` /
``StderrEvent``.

* Ring buffer on kernels >= 5.8, perf buffer before. Every event is copied out of the buffer in the
  callback (``ctypes.string_at``), never kept as a view into ring memory (the old system's bug).
* Lost events: ring-buffer output failures are counted in the per-CPU ``counters`` map by the BPF
  side; perf-buffer losses come through the lost callback. Both show in ``counters()``.
* The exit status comes from tracepoints (see bpf_exit.c and ``exit_status``), never from
  ``task_struct``, whose offsets cannot be trusted when the headers do not match the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import platform
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from watcher_agents.procmon.events import ExecEvent, ExitEvent, StderrEvent
from watcher_agents.procmon.tracer import TracerUnavailable

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BPF_SOURCES = ("bpf_common.c", "bpf_exec.c", "bpf_chdir.c", "bpf_exit.c")
STDERR_SOURCE = "bpf_stderr.c"  # after bpf_common.c: its hooks are called by the exec and exit programs

EV_EXEC, EV_EXIT, EV_CHDIR, EV_STDERR = 1, 2, 3, 4
F_ARGV_TRUNCATED, F_ARGV_MISSING, F_PPID_KNOWN = 0x01, 0x02, 0x04
H_EXIT_GROUP, H_THREAD_EXIT, H_LEADER_ONLY = 0x01, 0x02, 0x04
F_STDERR_TRUNCATED = 0x01
COUNTER_NAMES = ("lost", "filtered_exec", "exec", "exit", "argv_missing", "stderr_lost", "stderr_truncated")

SIGKILL = 9
BPF_NOEXIST = 1  # bpf_update_elem flag: create only

# struct exec_event up to argv (see bpf_common.c); struct exit_event.
_EXEC_HEAD = struct.Struct("<BBHIIIIIQQ16s256s")
_EXIT = struct.Struct("<BBBBIIiiIQQ16s")
_CHDIR = struct.Struct("<BB2xI256s")
_STDERR_HEAD = struct.Struct("<BBHII4x")
STDERR_MAX = 16384  # bytes of stderr per compile or run (its children included)
POLL_MS = 50
BATCH_WAIT_S = 0.002
TRACING_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def exit_status(
    how: int, exit_code: int, thread_code: int, sig_delivered: int, sig_generated: int
) -> tuple[int | None, int | None]:
    """(exit_code, signal) of a process from what the tracepoints saw (exactly one is set, or neither).

    * It called exit_group(code): exited with ``code & 0xff`` (``exit(256)`` is 0, as the kernel does).
    * A thread took a fatal signal with the default action: killed by it. When that signal is SIGKILL
      the kernel may have turned a queued fatal signal (SIGTERM, SIGINT...) into a group-wide SIGKILL,
      so the last fatal signal queued to the process is the real cause (it is SIGKILL itself for kill -9).
    * Its last thread called exit(code): exited with ``code & 0xff``.
    """
    if how & H_EXIT_GROUP:
        return exit_code & 0xFF, None
    if sig_delivered:
        if sig_delivered == SIGKILL and sig_generated:
            return None, sig_generated
        return None, sig_delivered
    if how & H_THREAD_EXIT:
        return thread_code & 0xFF, None
    return None, None


def decode_exec(raw: bytes) -> ExecEvent:
    (_t, flags, argv_len, argc, pid, tid, ppid, uid, cgid, ktime, comm, filename) = _EXEC_HEAD.unpack_from(raw)
    body = raw[_EXEC_HEAD.size : _EXEC_HEAD.size + argv_len]
    args = body.split(b"\0")
    if args and args[-1] == b"":
        args.pop()
    return ExecEvent(
        pid=pid,
        ktime_ns=ktime,
        filename=_cstr(filename),
        argv=[a.decode("utf-8", "surrogateescape") for a in args[: argc or None]],
        argv_truncated=bool(flags & F_ARGV_TRUNCATED),
        argv_missing=bool(flags & F_ARGV_MISSING),
        ppid=ppid if flags & F_PPID_KNOWN else 0,
        uid=uid,
        cgroup_id=cgid,
        comm=_cstr(comm),
    )


def decode_exit(raw: bytes) -> ExitEvent:
    (_t, how, sig_d, sig_g, pid, _tid, code, tcode, _pad, start, ktime, comm) = _EXIT.unpack_from(raw)
    exit_code, sig = exit_status(how, code, tcode, sig_d, sig_g)
    return ExitEvent(pid=pid, ktime_ns=ktime, exit_code=exit_code, signal=sig, start_ns=start, comm=_cstr(comm))


def decode_chdir(raw: bytes) -> tuple[int, str | None]:
    """(pid, the path chdir was given or None: fchdir, or a path that could not be read)."""
    if len(raw) < _CHDIR.size:  # the old layout: the pid only
        return struct.unpack_from("<I", raw, 4)[0], None
    _t, has_path, pid, path = _CHDIR.unpack_from(raw)
    return pid, (_cstr(path) or None) if has_path else None


def decode_stderr(raw: bytes) -> StderrEvent:
    _t, flags, length, pid, owner = _STDERR_HEAD.unpack_from(raw)
    data = raw[_STDERR_HEAD.size : _STDERR_HEAD.size + length]
    return StderrEvent(pid=pid, owner=owner, data=data, truncated=bool(flags & F_STDERR_TRUNCATED))


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def import_bcc():
    """``import bcc``; if the venv does not have it, load just Debian's package (python3-bpfcc) from
    /usr/lib/python3/dist-packages without putting all of Debian's dist-packages on sys.path."""
    try:
        import bcc  # noqa: F401

        return sys.modules["bcc"]
    except ImportError:
        pass
    for base in ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3/dist-packages"):
        pkg = Path(base) / "bcc"
        if (pkg / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location(
                "bcc", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules["bcc"] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # libbcc.so missing or broken
                del sys.modules["bcc"]
                raise TracerUnavailable(f"cannot load the bcc module from {pkg}: {exc}") from None
            return module
    raise TracerUnavailable("the bcc Python module is not installed (apt-get install python3-bpfcc)")


def tracing_dir() -> str:
    """The tracefs events directory; mounts tracefs at /sys/kernel/tracing if nothing is mounted."""
    for d in TRACING_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"nodev", b"/sys/kernel/tracing", b"tracefs", 0, None) == 0:
        log.info("mounted tracefs at /sys/kernel/tracing")
        return "/sys/kernel/tracing"
    err = ctypes.get_errno()
    raise TracerUnavailable(
        f"no tracefs: /sys/kernel/tracing/events is missing and mounting tracefs "
        f"failed ({os.strerror(err)}); mount /sys/kernel/tracing from the host"
    )


def kernel_version() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


class EbpfTracer:
    """Loads the programs and polls the buffer in a thread; calls ``on_exec`` / ``on_exit`` there."""

    mode = "ebpf"

    def __init__(
        self,
        on_exec: Callable[[ExecEvent], None],
        on_exit: Callable[[ExitEvent], None],
        *,
        argv_size: int = 4096,
        max_args: int = 64,
        arg_chunk: int = 1024,
        ring_pages: int = 2048,
        buffer: str = "auto",
        kernel_filter: bool = True,
        wake_on_exec: bool = True,
        capture_stderr: bool = True,
        stderr_max: int = STDERR_MAX,
    ) -> None:
        if argv_size < 256 or argv_size & (argv_size - 1) or argv_size > 32768:
            raise ValueError("argv size must be a power of two between 256 and 32768")
        self.on_exec, self.on_exit = on_exec, on_exit
        self.on_chdir: Callable[[int, str | None], None] = lambda pid, path=None: None
        self.on_stderr: Callable[[StderrEvent], None] = lambda ev: None
        self.captures_stderr, self.stderr_max = capture_stderr, stderr_max
        self.argv_size, self.max_args, self.arg_chunk = argv_size, max_args, min(arg_chunk, argv_size)
        self.ring_pages, self.buffer, self.kernel_filter = ring_pages, buffer, kernel_filter
        self.wake_on_exec = wake_on_exec
        self.bpf = None
        self.use_ringbuf = False
        self.perf_lost = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        self._ct = None
        self.after_poll: Callable[[], None] = lambda: None  # the pipeline hands its batch over here
        self._polled = 0

    # --- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Compile, load and attach. Raises TracerUnavailable with a one-line reason."""
        if not _has_bpf_caps():
            raise TracerUnavailable(
                "missing capabilities: needs CAP_BPF and CAP_PERFMON (kernel 5.8+) or CAP_SYS_ADMIN"
            )
        tdir = tracing_dir()
        bcc = import_bcc()
        self._ct = bcc
        major_minor = kernel_version()
        self.use_ringbuf = self.buffer == "ring" or (self.buffer == "auto" and major_minor >= (5, 8))
        fmt = Path(tdir, "events/sched/sched_process_exit/format")
        try:
            group_dead = "group_dead" in fmt.read_text()
        except OSError:
            raise TracerUnavailable(f"tracepoint sched:sched_process_exit not found under {tdir}") from None
        for tp in (
            "sched/sched_process_exec",
            "sched/sched_process_fork",
            "syscalls/sys_enter_execve",
            "syscalls/sys_enter_execveat",
            "syscalls/sys_enter_chdir",
            "syscalls/sys_exit_chdir",
            "syscalls/sys_exit_fchdir",
            "syscalls/sys_enter_exit",
            "syscalls/sys_enter_exit_group",
            "signal/signal_deliver",
            "signal/signal_generate",
            *(("syscalls/sys_enter_write", "syscalls/sys_enter_writev") if self.captures_stderr else ()),
        ):
            if not Path(tdir, "events", tp).is_dir():
                raise TracerUnavailable(f"tracepoint {tp.replace('/', ':')} not found under {tdir}/events")
        cflags = [
            f"-DARGV_SIZE={self.argv_size}",
            f"-DARG_CHUNK={self.arg_chunk}",
            f"-DMAX_ARGS={self.max_args}",
            f"-DRINGBUF_PAGES={self.ring_pages}",
        ]
        cflags.append(f"-DEXEC_WAKEUP={1 if self.wake_on_exec else 0}")
        if self.use_ringbuf:
            cflags.append("-DUSE_RINGBUF")
        if group_dead:
            cflags.append("-DHAVE_GROUP_DEAD")
        sources = list(BPF_SOURCES)
        if self.captures_stderr:
            cflags += ["-DCAPTURE_STDERR", f"-DSTDERR_MAX={self.stderr_max}"]
            sources.insert(1, STDERR_SOURCE)
        text = "\n".join((HERE / name).read_text() for name in sources)
        kernel_build = Path(f"/lib/modules/{platform.release()}/build")
        if not kernel_build.exists():
            raise TracerUnavailable(
                f"no kernel headers: {kernel_build} is missing (run scripts/deps/bcc.sh "
                "or mount /lib/modules and /usr/src from the host)"
            )
        quiet = _quiet_stderr()
        try:
            # bcc prints clang diagnostics on stderr; keep them out of the agent's one-line logs and
            # quote the first error in the reason instead.
            with quiet:
                self.bpf = bcc.BPF(text=text, cflags=cflags)
        except Exception as exc:
            detail = quiet.first_error() or _one_line(exc)
            raise TracerUnavailable(f"bcc could not compile/load the program: {detail}") from None
        try:
            self.bpf["config"][ctypes.c_int(0)] = ctypes.c_uint(1 if self.kernel_filter else 0)
            if self.use_ringbuf:
                self.bpf["events"].open_ring_buffer(self._on_raw)
            else:
                self.bpf["events"].open_perf_buffer(self._on_raw_perf, page_cnt=256, lost_cb=self._on_lost)
        except Exception as exc:
            self.close()
            raise TracerUnavailable(f"cannot open the event buffer: {_one_line(exc)}") from None
        log.info(
            "eBPF programs attached (%s buffer, group_dead %s, argv %d bytes / %d args, kernel filter %s, "
            "stderr capture %s)",
            "ring" if self.use_ringbuf else "perf",
            "yes" if group_dead else "no (leader exit)",
            self.argv_size,
            self.max_args,
            "on" if self.kernel_filter else "off",
            f"on ({self.stderr_max} bytes per process)" if self.captures_stderr else "off",
        )

    # --- events ----------------------------------------------------------------------------------

    def _on_raw(self, _ctx, data, size) -> int:
        raw = ctypes.string_at(data, size)  # a copy: the ring slot is reused after we return
        self._dispatch(raw)
        return 0

    def _on_raw_perf(self, _cpu, data, size) -> None:
        self._dispatch(ctypes.string_at(data, size))

    def _on_lost(self, count) -> None:
        self.perf_lost += count

    def _dispatch(self, raw: bytes) -> None:
        self._polled += 1
        try:
            if raw[0] == EV_EXEC:
                self.on_exec(decode_exec(raw))
            elif raw[0] == EV_EXIT:
                self.on_exit(decode_exit(raw))
            elif raw[0] == EV_CHDIR:
                self.on_chdir(*decode_chdir(raw))
            elif raw[0] == EV_STDERR:
                self.on_stderr(decode_stderr(raw))
        except Exception:  # a bad event must never stop the poll loop
            log.exception("cannot handle a kernel event")

    def start(self) -> EbpfTracer:
        self._thread = threading.Thread(target=self._run, name="procmon-ebpf-poll", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        poll = self.bpf.ring_buffer_poll if self.use_ringbuf else self.bpf.perf_buffer_poll
        while not self._stop.is_set():
            try:
                poll(POLL_MS)
                if self.use_ringbuf:
                    # Exit events do not wake us, and a poll that times out reads nothing: drain
                    # whatever is there after every wakeup or timeout (at most POLL_MS late).
                    self.bpf.ring_buffer_consume()
                if self._polled:
                    self._polled = 0
                    self.after_poll()
                    # During a burst of execs, let a few more arrive before reading again: one wakeup
                    # and one pass per several events instead of per event. 2 ms is well within the
                    # life of a 20 ms gcc, and a shorter program is attributed through its parent.
                    self._stop.wait(BATCH_WAIT_S)
            except Exception as exc:  # keep polling; the health check shows a dead loop, never silence
                self.error = _one_line(exc)
                log.error("eBPF poll failed: %s", self.error)
                self._stop.wait(1)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.close()

    def close(self) -> None:
        if self.bpf is not None:
            try:
                self.bpf.cleanup()
            except Exception:
                pass
            self.bpf = None

    # --- maps written by user space -------------------------------------------------------------

    def set_cgroup_verdict(self, cgroup_id: int, verdict: int | None) -> None:
        table = self.bpf["cgroup_verdict"]
        key = ctypes.c_ulonglong(cgroup_id)
        if verdict is None:
            try:
                del table[key]
            except KeyError:
                pass
        else:
            table[key] = ctypes.c_ubyte(verdict)

    def untrack(self, pid: int, start_ns: int) -> None:
        """No exit event for this exec of ``pid`` (user space does not care about it). The entry is left
        alone if the process has exec'd again since (a newer program we may want)."""
        table = self.bpf["tracked"]
        key = ctypes.c_uint(pid)
        try:
            if table[key].start_ns == start_ns:
                del table[key]
        except (KeyError, TypeError):
            pass

    def track(self, pid: int, start_ns: int) -> bool:
        """Watch the exit of a process that was running before the programs were attached (adoption):
        a ``tracked`` entry with ``start_ns``, which its exit event will carry. Only if there is none:
        an entry means the process exec'd after the attach, and that exec event reports it. False
        then, or when the map refused the entry."""
        table = self.bpf["tracked"]
        key, leaf = table.Key(pid), table.Leaf()
        leaf.start_ns = start_ns
        lib = sys.modules["bcc.libbcc"].lib
        return lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(leaf), BPF_NOEXIST) == 0

    def ignore_stderr(self, pid: int) -> None:
        """Drop the kernel's ``capture`` entry of ``pid``: its writes (and its later children's) are not sent."""
        if not self.captures_stderr or self.bpf is None:
            return
        try:
            del self.bpf["capture"][ctypes.c_uint(pid)]
        except KeyError:
            pass

    def counters(self) -> dict[str, int]:
        if self.bpf is None:
            return {}
        table = self.bpf["counters"]
        out = {name: int(table.sum(ctypes.c_int(i)).value) for i, name in enumerate(COUNTER_NAMES)}
        out["lost"] += self.perf_lost
        return out


def _has_bpf_caps() -> bool:
    """CAP_BPF (39) and CAP_PERFMON (38), or CAP_SYS_ADMIN (21), in the effective set."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                return bool(eff & (1 << 21)) or (bool(eff & (1 << 39)) and bool(eff & (1 << 38)))
    except OSError:
        pass
    return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


class _quiet_stderr:
    """Capture fd 2 while bcc's clang and the verifier run (header warnings, verifier logs)."""

    def __init__(self) -> None:
        self.text = ""

    def __enter__(self):
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read(1 << 20).decode("utf-8", "replace")
        self._file.close()

    def first_error(self) -> str | None:
        for line in self.text.splitlines():
            low = line.lower()
            if "error" in low or "permission" in low or "operation not permitted" in low:
                return line.strip()[:300]
        return None
