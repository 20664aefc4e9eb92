# JCode Watcher notebook hook: records every notebook cell run as a ``notebook.cell`` event.
#
# Deployed as an IPython startup file (copied verbatim into a ConfigMap and mounted at
# ~/.ipython/profile_default/startup/00-jcode-watcher.py in the student pod), so: standard library only,
# Python >= 3.9. What is recorded: which notebook, when, how long, the In[n] counter and the exception
# class if the cell raised. Never the cell's code or its output.
#
# Flow: post_run_cell appends one JSON line to a local spool and wakes a daemon sender thread; the
# student's cell never waits on the network. The sender posts batches to {WATCHER_BACKEND_URL}/api/v1/events
# with the student's notebook token (watcher_core.cell_tokens) and removes what the backend answered
# for. Event ids are made once, when the cell ends, and kept in the spool: resending after a failure or
# a kernel restart (the next kernel picks the spool up) never doubles an event. Everything that goes
# wrong is counted in status.json next to the spool, for an instructor or operator to read.
#
# Two ways this file is loaded:
# * imported as ``watcher_core.notebook_hook`` (tests, tooling): nothing is installed; the functions
#   below are pure and ``install(ip, config)`` does the installing.
# * exec'd by IPython in the student's namespace at kernel start: ``_startup`` (at the bottom) loads this
#   same file again as a private module in sys.modules, installs it from there, and puts the student's
#   namespace back exactly as it was, so the student sees no new names. That is why the very first
#   statement copies the namespace (and why there is no docstring: it would overwrite ``__doc__``).
_jcode_watcher_saved_ns = dict(globals())

import atexit
import contextlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

try:
    import fcntl  # serialises spool access between kernels of the same pod (Linux)
except ImportError:  # pragma: no cover - not Linux
    fcntl = None  # type: ignore[assignment]

MODULE_NAME = "_jcode_watcher_notebook_hook"
DEFAULT_URL = "http://watcher-backend-service.watcher.svc.cluster.local:3000"
DEFAULT_WORKSPACE = "/home/coder/project"
DEFAULT_PATTERN = r"hw\d+"
DEFAULT_SPOOL = "~/.local/state/jcode-watcher/notebook"
# Directories that are never student work; the same list as watcher_core.identity.DEFAULT_IGNORE_DIRS.
IGNORED_DIRS = re.compile(r"\..*|__pycache__|site-packages|dist-packages|venv|node_modules")
SPOOL_CAP = 10_000  # events kept while the backend is unreachable; the oldest go first
BATCH = 500  # events per POST (the backend takes up to 1000)
TIMEOUT = 2.0  # seconds per HTTP request
BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0
ATEXIT_SECONDS = 1.0  # how long kernel shutdown may wait for a last send
MAX_NOTEBOOK_BYTES = 32 * 1024 * 1024  # larger .ipynb files are not read for cell_index
COUNTERS = (
    "recorded",
    "sent",
    "rejected",
    "dropped_spool_full",
    "outside_assignment",
    "hook_errors",
    "send_failures",
    "no_token",
)
# Same rules as watcher_core.identity / watcher_core.wire (this file cannot import them).
_TOKEN_RE = re.compile(
    r"nb1\.([A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?)\.([A-Za-z0-9]{1,16})"
    r"\.([A-Za-z0-9]{1,32})\.[A-Za-z0-9_-]+"
)
_EXCEPTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
_NODE_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")
_SPOOL_ID_RE = re.compile(r'\{"id":"([^"]*)"')  # every spool line starts with its event id
# The backend is inside the cluster: never route it through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Config:
    def __init__(
        self,
        url=DEFAULT_URL,
        token=None,
        token_file=None,
        workspace=DEFAULT_WORKSPACE,
        pattern=DEFAULT_PATTERN,
        spool_dir=DEFAULT_SPOOL,
        node=None,
        timeout=TIMEOUT,
        cap=SPOOL_CAP,
    ):
        self.url = url.rstrip("/")
        self.token, self.token_file = token, token_file
        self.workspace, self.problem = workspace, None
        try:
            self.pattern = re.compile(pattern)
        except re.error as exc:
            self.pattern = re.compile(DEFAULT_PATTERN)
            self.problem = f"WATCHER_ASSIGNMENT_PATTERN {pattern!r} is not a regex ({exc}); using {DEFAULT_PATTERN}"
        self.spool_dir = os.path.abspath(os.path.expanduser(spool_dir))  # the student may chdir
        node = node or socket.gethostname()
        self.node = node if _NODE_RE.fullmatch(node) else (re.sub(r"[^A-Za-z0-9._-]", "-", node)[:253] or "unknown")
        self.timeout, self.cap = timeout, cap

    def read_token(self):
        """The token, re-read on every send so a secret mounted or rotated later is picked up."""
        if self.token:
            return self.token.strip()
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    return f.read().strip() or None
            except OSError:
                return None
        return None


# The pod's environment, read when the kernel starts: (variable, Config argument, default, how the default
# reads, meaning). docs/configuration.md ("The notebook hook") is generated from this table. A bad value is
# replaced by the default: the student's cell never fails because of a setting.
ENVIRONMENT = (
    (
        "WATCHER_NOTEBOOK_TOKEN",
        "token",
        None,
        "none (events are spooled, counted as `no_token`, never sent)",
        "the student's token (`watcher notebook token`); it also names the student. `WATCHER_NOTEBOOK_TOKEN_FILE` "
        "names a file holding it instead, read again before every send (a Secret mounted later is picked up)",
    ),
    ("WATCHER_BACKEND_URL", "url", DEFAULT_URL, None, "the backend, as for the agents"),
    ("WATCHER_NOTEBOOK_WORKSPACE", "workspace", DEFAULT_WORKSPACE, None, "the student's folder in the pod"),
    (
        "WATCHER_ASSIGNMENT_PATTERN",
        "pattern",
        DEFAULT_PATTERN,
        None,
        "assignment folder names, as for the agents (a bad one is reported in `status.json` as `config_error`)",
    ),
    ("WATCHER_NOTEBOOK_SPOOL", "spool_dir", DEFAULT_SPOOL, None, "the spool and `status.json`"),
    (
        "WATCHER_NOTEBOOK_TIMEOUT",
        "timeout",
        TIMEOUT,
        None,
        "seconds per request to the backend (the cell never waits for it)",
    ),
)


def config_from_env(env=None):
    env = os.environ if env is None else env
    kwargs = {}
    for variable, argument, default, _shown, _doc in ENVIRONMENT:
        raw = (env.get(variable) or "").strip()
        if argument == "token":
            kwargs["token"] = raw or None
            kwargs["token_file"] = (env.get(variable + "_FILE") or "").strip() or None
        elif argument == "timeout":
            try:
                value = float(raw or default)
            except ValueError:
                value = default
            kwargs[argument] = value if 0 < value < float("inf") else default
        else:
            kwargs[argument] = raw or default
    return Config(**kwargs)


# ------------------------------------------------------------------ pure functions (unit-tested)


def identity_from_token(token):
    """``nb1.<course>.<section>.<student_id>.<mac>`` -> {course, section, student_id}, or None."""
    match = _TOKEN_RE.fullmatch(token or "")
    if match is None:
        return None
    return {"course": match.group(1), "section": match.group(2), "student_id": match.group(3)}


def notebook_path(user_ns, env, cell_id, cwd):
    """Absolute path of the notebook this kernel runs, or None when the front end does not say."""
    path = user_ns.get("__vsc_ipynb_file__")  # VS Code / code-server Jupyter
    if not (isinstance(path, str) and path):
        path = env.get("JPY_SESSION_NAME")  # Jupyter Server
    if not path and isinstance(cell_id, str) and cell_id.startswith("vscode-notebook-cell:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(cell_id).path)
    if not (isinstance(path, str) and path):
        return None
    if not os.path.isabs(path):
        # Jupyter Server before 2.0.7 gave the path relative to its root; the kernel runs in the
        # notebook's folder, so the file name below the cwd is the notebook.
        path = os.path.join(cwd, os.path.basename(path))
    return os.path.normpath(path)


def assignment_of(path, workspace, pattern, is_dir):
    """(assignment, path inside it or '.') for an absolute path, or None outside every assignment.

    The assignment is the first directory below the workspace whose whole name matches ``pattern``,
    as in watcher_core.identity (so filemon and the hook agree on where a notebook belongs).
    """
    path = os.path.normpath(path)
    for root in dict.fromkeys((os.path.normpath(workspace), os.path.realpath(workspace))):
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            continue
        parts = [p for p in path[len(root) :].split("/") if p]
        dirs = parts if is_dir else parts[:-1]
        for i, part in enumerate(dirs):
            if IGNORED_DIRS.fullmatch(part):
                return None
            if pattern.fullmatch(part):
                if any(IGNORED_DIRS.fullmatch(p) for p in dirs[i + 1 :]):
                    return None
                return part, "/".join(parts[i + 1 :]) or "."
        return None
    return None


def resolve(notebook, cwd, workspace, pattern):
    """(assignment, notebook path in it) from the notebook, else (assignment, '.') from the cwd, else None."""
    found = assignment_of(notebook, workspace, pattern, is_dir=False) if notebook else None
    if found is None:
        in_cwd = assignment_of(cwd, workspace, pattern, is_dir=True)
        found = (in_cwd[0], ".") if in_cwd else None
    return found


def error_name(result):
    """Class name of the exception a cell raised (``module.Name`` unless a builtin), or None."""
    exc = getattr(result, "error_before_exec", None) or getattr(result, "error_in_exec", None)
    if exc is None:
        return None
    cls = type(exc)
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", cls.__name__)
    for candidate in (name if module in (None, "builtins") else f"{module}.{name}", cls.__name__):
        if _EXCEPTION_RE.fullmatch(candidate):
            return candidate
    return "Exception"


def cell_index(notebook, cell_id, cache=None):
    """Position of the cell whose nbformat 4.5 ``id`` is ``cell_id`` in the saved notebook, or None."""
    if not notebook or not cell_id:
        return None
    cache = {} if cache is None else cache
    if notebook not in cache:
        cache[notebook] = None
        try:
            if os.path.getsize(notebook) <= MAX_NOTEBOOK_BYTES:
                with open(notebook, encoding="utf-8") as f:
                    cells = json.load(f).get("cells") or []
                cache[notebook] = {c.get("id"): i for i, c in reversed(list(enumerate(cells))) if isinstance(c, dict)}
        except (OSError, ValueError, AttributeError):
            pass
    index = (cache[notebook] or {}).get(cell_id)
    return index if isinstance(index, int) and index <= 100_000 else None


def build_event(node, where, started, ended, error, cell_id, execution_count):
    """A notebook.cell event without the student (the sender adds that from its token)."""
    if not isinstance(cell_id, str):
        cell_id = None
    return {
        "event_id": "ipynb:" + uuid.uuid4().hex,
        "type": "notebook.cell",
        "timestamp": started.isoformat(),
        "node": node,
        "source": "ipynb",
        "assignment": where[0],
        "path": where[1],
        "started_at": started.isoformat(),
        "ended_at": max(started, ended).isoformat(),
        "error": error,
        "cell_id": cell_id.replace("\x00", "")[:255] if cell_id else None,
        "cell_index": None,
        "execution_count": execution_count if isinstance(execution_count, int) and execution_count >= 0 else None,
    }


def _now():
    return datetime.now(timezone.utc)


def _read_quietly(response):
    try:
        return response.read()
    except Exception:
        return b""


# ------------------------------------------------------------------ the spool (shared by the pod's kernels)


class Spool:
    """``pending.jsonl``: one ``{"id", "event", "notebook"}`` per line, oldest first; ``status.json`` beside it."""

    def __init__(self, directory, cap=SPOOL_CAP):
        self.dir, self.cap = directory, cap
        self.path = os.path.join(directory, "pending.jsonl")
        self.status_path = os.path.join(directory, "status.json")

    @contextlib.contextmanager
    def locked(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, event, notebook=None):
        line = json.dumps({"id": event["event_id"], "event": event, "notebook": notebook}, separators=(",", ":"))
        with self.locked(), open(self.path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():  # a line cut short by a crash must not swallow this one
                f.seek(-1, os.SEEK_END)
                line = ("" if f.read(1) == b"\n" else "\n") + line
            f.write(line.encode() + b"\n")

    def take(self, limit):
        """Drop the oldest lines beyond the cap, then (up to ``limit`` records, pending, dropped, corrupt)."""
        with self.locked():
            lines = self._lines()
            dropped = max(0, len(lines) - self.cap)
            lines = lines[dropped:]
            records, corrupt = [], []
            for line in lines[:limit]:
                try:
                    record, match = json.loads(line), _SPOOL_ID_RE.match(line)
                    if match is None or match.group(1) != record["event"]["event_id"]:
                        raise ValueError("remove() could never find this line")
                    records.append(record)
                except (ValueError, TypeError, KeyError):
                    corrupt.append(line)  # e.g. cut short by a crash: cannot be sent, ever
            if dropped or corrupt:
                self._rewrite([line for line in lines if line not in corrupt])
            return records, len(lines) - len(corrupt), dropped, len(corrupt)

    def remove(self, event_ids):
        with self.locked():
            lines = self._lines()
            keep = [line for line in lines if (_SPOOL_ID_RE.match(line) or [None, None])[1] not in event_ids]
            if len(keep) != len(lines):
                self._rewrite(keep)
            return len(keep)

    def _lines(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return [line for line in f.read().split("\n") if line]
        except FileNotFoundError:
            return []

    def _rewrite(self, lines):
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, self.path)

    def merge_status(self, counts, pending, extra):
        """Add this kernel's ``counts`` to status.json (totals of every kernel that used this spool)."""
        with self.locked():
            try:
                with open(self.status_path, encoding="utf-8") as f:
                    status = json.load(f)
            except (OSError, ValueError):
                status = None
            status = status if isinstance(status, dict) else {}  # a stray edit must not stop the counting
            for name in COUNTERS:
                old = status.get(name)
                status[name] = (old if isinstance(old, int) else 0) + counts.get(name, 0)
            status.update({k: v for k, v in extra.items() if v is not None})
            status.update(pending=pending, spool=self.path, updated_at=_now().isoformat())
            tmp = self.status_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(status, f, indent=1, sort_keys=True)
            os.replace(tmp, self.status_path)


# ------------------------------------------------------------------ the hook and its sender thread


class Hook:
    JCODE_WATCHER_HOOK = True  # how install() recognises an installed hook, whichever copy of this file

    def __init__(self, ip, config):
        self.ip, self.config = ip, config
        self.spool = Spool(config.spool_dir, config.cap)
        self._started, self._cell_id = None, None
        self._lock = threading.Lock()  # guards the counters and errors below
        self._counts = dict.fromkeys(COUNTERS, 0)  # not yet added to status.json
        self._extra = {"config_error": config.problem}  # last_error, last_rejection, last_sent_at, ...
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._sender, name="jcode-watcher-sender", daemon=True)

    # -- IPython callbacks: never raise, never print, never touch the network
    def pre_run_cell(self, info=None):
        try:
            self._started, self._cell_id = _now(), getattr(info, "cell_id", None)
        except (Exception, KeyboardInterrupt) as exc:
            self._note("hook_errors", exc)

    def post_run_cell(self, result=None):
        try:
            ended, started, self._started = _now(), self._started, None
            cell_id = getattr(getattr(result, "info", None), "cell_id", None) or self._cell_id
            cwd = os.getcwd()
            notebook = notebook_path(self.ip.user_ns, os.environ, cell_id, cwd)
            where = resolve(notebook, cwd, self.config.workspace, self.config.pattern)
            if where is None:
                self._note("outside_assignment")
            else:
                event = build_event(
                    self.config.node,
                    where,
                    started or ended,
                    ended,
                    error_name(result),
                    cell_id,
                    getattr(result, "execution_count", None),
                )
                self.spool.append(event, notebook if notebook and notebook.endswith(".ipynb") else None)
                self._note("recorded")
        except (Exception, KeyboardInterrupt) as exc:
            self._note("hook_errors", exc)
        finally:
            self._wake.set()

    def _note(self, counter, error=None, status=None):
        with self._lock:
            self._counts[counter] += 1
            if error is not None:
                self._extra["last_error"] = {
                    "time": _now().isoformat(),
                    "counter": counter,
                    "status": status,
                    "message": str(error)[:500],
                }

    # -- the sender thread
    def _sender(self):
        retry_at, backoff = 0.0, 0.0
        while True:
            stopping, more = self._stopping, False
            try:
                more, retry_at, backoff = self._cycle(retry_at, backoff, stopping)
            except Exception as exc:
                self._note("hook_errors", exc)
                retry_at = time.monotonic() + BACKOFF_MAX
            if stopping:
                return
            if not more:
                self._wake.wait(max(0.0, retry_at - time.monotonic()) if retry_at else None)
                self._wake.clear()

    def _cycle(self, retry_at, backoff, stopping):
        """One round: trim the spool, send a batch if one is due, write status.json. -> (more, retry_at, backoff)."""
        due = stopping or time.monotonic() >= retry_at
        records, pending, dropped, corrupt = self.spool.take(BATCH if due else 0)
        with self._lock:
            self._counts["dropped_spool_full"] += dropped
            self._counts["hook_errors"] += corrupt
        ok = False
        if records:
            ok = self._send(records)
            if ok:
                retry_at, backoff = 0.0, 0.0
                pending = self.spool.remove({r["event"]["event_id"] for r in records})
            else:
                backoff = min(max(BACKOFF_MIN, backoff * 2), BACKOFF_MAX)
                retry_at = time.monotonic() + backoff
        with self._lock:
            counts, self._counts = self._counts, dict.fromkeys(COUNTERS, 0)
            extra = dict(self._extra, token_configured=bool(self.config.read_token()), url=self.config.url)
        self.spool.merge_status(counts, pending, extra)
        return ok and pending > 0, retry_at, backoff

    def _send(self, records):
        """POST one batch. True when the backend answered for it (stored, duplicate or rejected)."""
        token = self.config.read_token()
        student = identity_from_token(token) if token else None
        if student is None:
            why = (
                "not a notebook token (nb1.<course>.<section>.<student_id>.<mac>)"
                if token
                else "no token configured (WATCHER_NOTEBOOK_TOKEN or WATCHER_NOTEBOOK_TOKEN_FILE)"
            )
            self._note("no_token", why + "; events are kept in the spool")
            return False
        cache, events = {}, []
        for record in records:
            event = dict(record["event"], **student)
            if event.get("cell_index") is None:
                event["cell_index"] = cell_index(record.get("notebook"), event.get("cell_id"), cache)
            events.append(event)
        request = urllib.request.Request(
            self.config.url + "/api/v1/events",
            data=json.dumps(events).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer " + token,
                "X-Watcher-Source": "ipynb",
            },
        )
        try:
            with _OPENER.open(request, timeout=self.config.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, _read_quietly(exc)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, cut off, bad URL
            self._note("send_failures", f"cannot reach {self.config.url}: {exc}")
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        if 200 <= status < 300 or (status == 422 and "rejected" in answer):
            rejected = answer.get("rejected") if isinstance(answer.get("rejected"), list) else []
            with self._lock:
                self._counts["sent"] += int(answer.get("accepted", len(events) - len(rejected)) or 0) + int(
                    answer.get("duplicates") or 0
                )
                self._counts["rejected"] += len(rejected)
                if rejected:
                    last = rejected[-1] if isinstance(rejected[-1], dict) else {}
                    self._extra["last_rejection"] = {
                        "time": _now().isoformat(),
                        "event_id": last.get("event_id"),
                        "error": str(last.get("error"))[:500],
                    }
                self._extra["last_sent_at"] = _now().isoformat()
            return True
        detail = answer.get("detail") if answer else body[:300].decode("utf-8", "replace")
        self._note("send_failures", f"HTTP {status}: {detail}", status)
        return False

    def at_exit(self):
        """Kernel shutdown: one last send, for at most ATEXIT_SECONDS; what is left waits in the spool."""
        try:
            self._stopping = True
            self.config.timeout = min(self.config.timeout, ATEXIT_SECONDS)
            self._wake.set()
            self._thread.join(ATEXIT_SECONDS)
        except Exception:
            pass


def install(ip, config):
    """Register the hook with IPython shell ``ip`` and start its sender; a second call returns the first hook."""
    for callback in ip.events.callbacks.get("post_run_cell", []):
        owner = getattr(callback, "__self__", None)
        if getattr(owner, "JCODE_WATCHER_HOOK", False):
            return owner
    hook = Hook(ip, config)
    ip.events.register("pre_run_cell", hook.pre_run_cell)
    ip.events.register("post_run_cell", hook.post_run_cell)
    atexit.register(hook.at_exit)
    hook._thread.start()
    return hook


def _startup(ns, saved):
    """Run as an IPython startup file: install from a private module, then restore the user namespace."""
    try:
        import importlib.util
        import sys

        module = sys.modules.get(MODULE_NAME)
        if module is None and ns.get("__file__"):  # IPython sets __file__ for startup files
            spec = importlib.util.spec_from_file_location(MODULE_NAME, ns["__file__"])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[MODULE_NAME] = module
        if module is not None:
            module.install(ns["get_ipython"](), module.config_from_env())
    except Exception:
        pass  # a broken hook must not disturb the student's kernel
    finally:
        for name in [n for n in ns if n not in saved]:
            del ns[name]
        ns.update(saved)


if __name__ == "__main__" and callable(globals().get("get_ipython")):
    _startup(globals(), _jcode_watcher_saved_ns)
else:
    del _jcode_watcher_saved_ns
