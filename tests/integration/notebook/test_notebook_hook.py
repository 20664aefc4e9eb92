"""The notebook hook in a REAL IPython kernel (jupyter_client starts ipykernel with the hook as its profile's
startup file, exactly as the ConfigMap mounts it) against a REAL backend that accepts notebook tokens.

A temp dir plays the student's pod: ``home/`` is HOME (so the spool is the default one), ``project/`` is the
workspace with ``hw1/lab.ipynb`` saved with nbformat 4.5 cell ids, and the kernel runs in ``project/hw1``.
The last tests drive the sender against a stub HTTP server for answers the real backend does not give on
demand (rejections, 503s)."""

from __future__ import annotations

import ast
import http.server
import json
import os
import queue
import secrets
import shutil
import socket
import threading
from pathlib import Path

import pytest

from support.backend import run_backend
from support.waiting import wait_for
from watcher_core import cell_tokens, identity, notebook_hook, wire

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

HOOK_FILE = Path(notebook_hook.__file__)
KEY = secrets.token_urlsafe(32)
CELL_IDS = ["cell-a", "cell-b", "cell-c"]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with run_backend(tmp_path_factory.mktemp("nb-backend"), env={"WATCHER_NOTEBOOK_KEY": KEY}) as handle:
        yield handle


@pytest.fixture
def student():
    return identity.Student("nb" + secrets.token_hex(3), "1", str(secrets.randbelow(10**9)).zfill(9))


class Pod:
    """A student's pod in ``root``: HOME, an IPython profile with ``copies`` of the hook, the workspace."""

    def __init__(self, root: Path, url: str, token: str | None, copies: int = 1, env: dict | None = None):
        self.root, self.home, self.project = root, root / "home", root / "project"
        self.hw1 = self.project / "hw1"
        self.hw1.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        self.notebook = self.hw1 / "lab.ipynb"
        cells = [
            {"cell_type": "code", "id": i, "metadata": {}, "source": "", "outputs": [], "execution_count": None}
            for i in CELL_IDS
        ]
        self.notebook.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
        self.startup = root / "ipython" / "profile_default" / "startup"
        self.startup.mkdir(parents=True, exist_ok=True)
        for n in range(copies):  # a second copy (say, baked into the image too) must not register twice
            shutil.copy(HOOK_FILE, self.startup / f"{n:02d}-jcode-watcher.py")
        (root / "plain" / "profile_default" / "startup").mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "JPY_"))}
        self.env.update(
            HOME=str(self.home),
            WATCHER_NOTEBOOK_WORKSPACE=str(self.project),
            WATCHER_BACKEND_URL=url,
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        if token:
            self.env["WATCHER_NOTEBOOK_TOKEN"] = token
        self.env.update(env or {})
        self.spool_dir = self.home / ".local" / "state" / "jcode-watcher" / "notebook"

    def status(self) -> dict:
        try:
            return json.loads((self.spool_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def spooled(self) -> list[str]:
        try:
            lines = (self.spool_dir / "pending.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line)["id"] for line in lines if line]


class Kernel:
    """A real ipykernel started by jupyter_client; ``plain=True`` starts one without the hook (the baseline)."""

    _count = 0

    def __init__(self, pod: Pod, plain: bool = False):
        Kernel._count += 1
        self.log_path = pod.root / f"kernel-{Kernel._count}{'-plain' if plain else ''}.log"
        env = dict(pod.env, IPYTHONDIR=str(pod.root / ("plain" if plain else "ipython")))
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.shutdown_wait_time = 30
        self.iopub: list[dict] = []
        with open(self.log_path, "wb") as log:
            self.km.start_kernel(env=env, cwd=str(pod.hw1), stdout=log, stderr=log)
        self.process = self.km.provisioner.process
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except Exception:
            self.shutdown()
            raise

    def run(self, code: str, cell_id: str | None = None, silent: bool = False, user_expressions=None) -> dict:
        """Execute like a notebook front end (the cell id goes in the request's metadata); the reply's content."""
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "allow_stdin": False,
            "user_expressions": user_expressions or {},
            "stop_on_error": False,
        }
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id} if cell_id else {})
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        while True:
            m = self.kc.get_iopub_msg(timeout=60)
            self.iopub.append(m)
            if (
                m["parent_header"].get("msg_id") == msg_id
                and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
            ):
                break
        while True:
            reply = self.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def evaluate(self, expression: str):
        """The value of ``expression`` in the kernel, without running a cell (a silent user expression)."""
        found = self.run("", silent=True, user_expressions={"x": expression})["user_expressions"]["x"]
        assert found["status"] == "ok", found
        return ast.literal_eval(found["data"]["text/plain"])

    def outputs(self) -> list[tuple]:
        """Everything a notebook would show, from every iopub message (whoever's child it is)."""
        while True:
            try:
                self.iopub.append(self.kc.get_iopub_msg(timeout=0.5))
            except queue.Empty:
                break
        shown = []
        for m in self.iopub:
            c = m["content"]
            if m["msg_type"] == "stream":
                shown.append(("stream", c["name"], c["text"]))
            elif m["msg_type"] == "error":
                shown.append(("error", c["ename"], c["evalue"]))
            elif m["msg_type"] in ("execute_result", "display_data", "update_display_data"):
                shown.append((m["msg_type"], json.dumps(c.get("data"), sort_keys=True)))
        return shown

    def shutdown(self) -> int | None:
        """Ask the kernel to shut down (its atexit runs); kill it only if it does not go. Its exit code."""
        try:
            self.kc.stop_channels()
        finally:
            try:
                self.km.shutdown_kernel(now=False)
            except Exception:
                self.km.shutdown_kernel(now=True)
        self.process.wait(10)
        return self.process.returncode


def _token(student: identity.Student, key: str = KEY) -> str:
    return cell_tokens.derive(key, student)


def _timeline(backend, student, assignment="hw1") -> list[dict]:
    with backend.client("read") as http:
        r = http.get(
            f"/api/v1/courses/{student.course}/sections/{student.section}/assignments/{assignment}"
            f"/students/{student.student_id}/timeline",
            params={"type": "notebook.cell", "limit": 1000},
        )
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return r.json()["events"]


def _wait_events(backend, student, n: int, timeout: float = 90) -> list[dict]:
    return wait_for(
        lambda: (lambda ev: ev if len(ev) >= n else None)(_timeline(backend, student)),
        timeout,
        f"{n} notebook.cell events in the backend",
    )


# ---------------------------------------------------------------- cells, as a student runs them


def test_cells_are_recorded_and_the_hook_leaves_no_trace_in_the_kernel(backend, student, tmp_path):
    pod = Pod(tmp_path, backend.url, _token(student), copies=2)
    cells = [  # (code, cell id sent by the front end)
        ("x = 6 * 7\nprint(x)", "cell-a"),
        ("1 / 0", "cell-b"),
        ("def broken(:\n    pass", "cell-c"),
        ("class Oops(Exception):\n    pass\nraise Oops()", None),
    ]
    setup = f"__vsc_ipynb_file__ = {str(pod.notebook)!r}"  # what VS Code's Jupyter runs, silently
    leave = f"import os as _os\n_os.chdir({str(tmp_path)!r})\ndel __vsc_ipynb_file__"  # outside hw1 now
    hooked, plain = Kernel(pod), None
    try:
        plain = Kernel(pod, plain=True)
        for kernel in (hooked, plain):
            kernel.run(setup, silent=True)
        replies = [hooked.run(code, cell_id) for code, cell_id in cells]
        for code, cell_id in cells:
            plain.run(code, cell_id)
        assert [r["status"] for r in replies] == ["ok", "error", "error", "error"]
        for kernel in (hooked, plain):
            kernel.run(leave)
        names = "sorted(get_ipython().user_ns)"
        ours = (
            "sum(getattr(getattr(cb, '__self__', None), 'JCODE_WATCHER_HOOK', False) for cb in "
            "get_ipython().events.callbacks[{!r}])"
        )
        assert hooked.evaluate(names) == plain.evaluate(names)  # not one new name, dunders included
        assert hooked.evaluate("__doc__") == plain.evaluate("__doc__")
        assert hooked.evaluate(ours.format("post_run_cell")) == 1  # two copies loaded, one registration
        assert hooked.evaluate(ours.format("pre_run_cell")) == 1
        # what the student sees: identical to a kernel without the hook, i.e. only the cells' own output
        assert hooked.outputs() == plain.outputs()
        assert [o for o in hooked.outputs() if o[0] == "stream"] == [("stream", "stdout", "42\n")]

        events = _wait_events(backend, student, 4)
        wait_for(
            lambda: pod.status().get("pending") == 0 and pod.status().get("outside_assignment") == 1,
            30,
            "status.json: nothing pending, one cell outside the assignment",
        )
    finally:
        hooked.shutdown()
        if plain is not None:
            plain.shutdown()
    assert len(events) == 4  # the silent setup and the cell run outside hw1 are not recorded
    assert [e["error"] for e in events] == [None, "ZeroDivisionError", "SyntaxError", "__main__.Oops"]
    assert [e["execution_count"] for e in events] == [r["execution_count"] for r in replies]
    assert [e["cell_id"] for e in events] == ["cell-a", "cell-b", "cell-c", None]
    assert [e["cell_index"] for e in events] == [0, 1, 2, None]  # looked up in the saved lab.ipynb
    for e in events:
        assert (e["assignment"], e["path"], e["source"]) == ("hw1", "lab.ipynb", "ipynb")
        assert (e["course"], e["section"], e["student_id"]) == (student.course, student.section, student.student_id)
        assert e["node"] == socket.gethostname()
        assert e["started_at"] <= e["ended_at"]
    status = pod.status()
    assert (status["recorded"], status["sent"], status["rejected"], status["hook_errors"]) == (4, 4, 0, 0)
    # the kernel's own stdout/stderr (where a startup file's print or traceback would go) carry nothing of ours
    assert hooked.log_path.read_text() == plain.log_path.read_text()


# ---------------------------------------------------------------- the backend away, gone quiet, or refusing


def test_events_wait_in_the_spool_while_the_backend_is_down_and_arrive_once(student, tmp_path):
    backend = run_backend(tmp_path / "backend", env={"WATCHER_NOTEBOOK_KEY": KEY})
    kernels = []
    try:
        backend.stop()
        pod = Pod(tmp_path / "pod", backend.url, _token(student))
        first = Kernel(pod)
        kernels.append(first)
        assert [first.run(f"v = {i}")["status"] for i in range(3)] == ["ok"] * 3  # cells never wait
        wait_for(
            lambda: pod.status().get("send_failures", 0) >= 1 and pod.status().get("pending") == 3,
            30,
            "status.json: a failed send, 3 events pending",
        )
        assert "cannot reach" in pod.status()["last_error"]["message"]
        backend.start()  # the same kernel's sender retries after its backoff
        _wait_events(backend, student, 3)

        backend.stop()  # down again; this time the kernel goes away too
        first.run("w = 1")
        wait_for(lambda: len(pod.spooled()) == 1, 30, "the 4th event in the spool")
        kernels.remove(first)
        assert first.shutdown() == 0  # atexit's last try fails fast, the event stays
        assert len(pod.spooled()) == 1
        backend.start()
        second = Kernel(pod)  # the next kernel picks the spool up
        kernels.append(second)
        second.run("z = 2")
        events = _wait_events(backend, student, 5)
        wait_for(lambda: pod.status().get("pending") == 0, 30, "an empty spool")
        assert len(_timeline(backend, student)) == 5  # and nothing more arrives
    finally:
        for kernel in kernels:
            kernel.shutdown()
        backend.stop()
    assert len({e["event_id"] for e in events}) == 5
    assert [e["execution_count"] for e in events] == [1, 2, 3, 4, 1]
    assert pod.status()["sent"] == 5 and pod.spooled() == []


def test_a_backend_that_never_answers_does_not_hold_up_a_cell(student, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    pod = Pod(tmp_path, url, _token(student), env={"WATCHER_NOTEBOOK_TIMEOUT": "300"})
    kernel = Kernel(pod)
    conn = None
    try:
        kernel.run("a = 1")
        conn, _ = listener.accept()  # the sender's POST for cell 1 ...
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, body = request.split(b"\r\n\r\n", 1)
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        assert b"X-Watcher-Source: ipynb" in head and f"Bearer {_token(student)}".encode() in head
        assert [e["execution_count"] for e in json.loads(body)] == [1]
        # ... is fully sent and waits for an answer that never comes. Meanwhile the student runs a cell:
        assert kernel.run("b = a + 1")["status"] == "ok"
        assert kernel.evaluate("b") == 2
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):  # the request is still open, unanswered ...
            conn.recv(1, socket.MSG_PEEK)
        assert len(pod.spooled()) == 2  # ... and the new cell is safely spooled behind it
        code = kernel.shutdown()  # atexit waits ~1 s for the stuck sender, not 300
        kernel = None
        assert code == 0 and len(pod.spooled()) == 2  # exited by itself; both events kept for the next kernel
    finally:
        if kernel is not None:
            kernel.shutdown()
        if conn is not None:
            conn.close()
        listener.close()


def test_a_forged_token_keeps_the_events_and_status_says_why(backend, student, tmp_path):
    forged = _token(student, key="x" * 40)  # right form, wrong MAC
    pod = Pod(tmp_path, backend.url, forged)
    kernel = Kernel(pod)
    try:
        kernel.run("1 + 1")
        kernel.run("2 + 2")
        status = wait_for(
            lambda: (lambda s: s if (s.get("last_error") or {}).get("status") == 401 else None)(pod.status()),
            30,
            "status.json naming the 401",
        )
        wait_for(lambda: len(pod.spooled()) == 2 and pod.status().get("pending") == 2, 30, "both events spooled")
    finally:
        kernel.shutdown()
    assert "invalid notebook token" in status["last_error"]["message"]
    assert status["send_failures"] >= 1 and status["sent"] == 0 and status["token_configured"] is True
    assert _timeline(backend, student) == []


# ---------------------------------------------------------------- the sender against canned answers


class StubBackend:
    """Answers POST /api/v1/events with queued (status, body) pairs, the last one repeating; records requests."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests.append((dict(self.headers), json.loads(body)))
                status, answer = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _sender(tmp_path, url, token, n=3):
    """A hook (no kernel needed for its sender) with ``n`` events spooled, the first from lab.ipynb's cell-b."""
    config = notebook_hook.Config(url=url, token=token, spool_dir=str(tmp_path / "spool"), node="pod-1")
    hook = notebook_hook.Hook(None, config)
    nb = tmp_path / "lab.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [{"id": i} for i in CELL_IDS]}))
    now = wire.utcnow()
    events = [
        notebook_hook.build_event("pod-1", ("hw1", "lab.ipynb"), now, now, None, c, i + 1)
        for i, c in enumerate(["cell-b"] + [None] * (n - 1))
    ]
    for e in events:
        hook.spool.append(e, str(nb))
    return hook, [e["event_id"] for e in events]


def test_rejected_events_are_dropped_and_counted_with_the_reason(student, tmp_path):
    hook, ids = _sender(tmp_path, "", _token(student))
    stub = StubBackend(
        (
            200,
            {"accepted": 1, "duplicates": 1, "rejected": [{"index": 2, "event_id": "x", "error": "cell_id: too long"}]},
        )
    )
    hook.config.url = stub.url
    try:
        assert hook._cycle(0.0, 0.0, False) == (False, 0.0, 0.0)
    finally:
        stub.close()
    headers, body = stub.requests[0]
    assert headers["Authorization"] == f"Bearer {_token(student)}" and headers["X-Watcher-Source"] == "ipynb"
    assert [e["event_id"] for e in body] == ids
    parsed = [wire.parse_event(e) for e in body]  # exactly the wire format: no spool bookkeeping
    assert {p.student for p in parsed} == {student}  # the student is the token's
    assert [p.cell_index for p in parsed] == [1, None, None]
    status = json.loads((tmp_path / "spool" / "status.json").read_text())
    assert (status["sent"], status["rejected"], status["pending"]) == (2, 1, 0)
    assert status["last_rejection"]["error"] == "cell_id: too long"
    assert hook.spool.take(10)[0] == []


def test_failures_back_off_exponentially_and_resend_the_same_events(student, tmp_path):
    stub = StubBackend(*[(503, {"detail": "database unavailable"})] * 8, (200, {"accepted": 3, "duplicates": 0}))
    try:
        hook, ids = _sender(tmp_path, stub.url, _token(student))
        backoffs, backoff = [], 0.0
        for _ in range(8):
            more, retry_at, backoff = hook._cycle(0.0, backoff, False)
            backoffs.append(backoff)
        assert backoffs == [1, 2, 4, 8, 16, 32, 60, 60]
        assert hook._cycle(retry_at, backoff, False)[2] == 60 and len(stub.requests) == 8  # not due: not sent
        status = json.loads((tmp_path / "spool" / "status.json").read_text())
        assert status["send_failures"] == 8 and status["pending"] == 3
        assert status["last_error"]["status"] == 503
        assert status["last_error"]["message"] == "HTTP 503: database unavailable"
        assert hook._cycle(0.0, backoff, False) == (False, 0.0, 0.0)  # back: sent, backoff reset
    finally:
        stub.close()
    assert all([e["event_id"] for e in body] == ids for _, body in stub.requests)  # every try, the same ids
    assert hook.spool.take(10)[1] == 0


def test_without_a_token_events_are_kept_and_status_says_so(student, tmp_path):
    stub = StubBackend((200, {"accepted": 2, "duplicates": 0}))
    token_file = tmp_path / "token"
    try:
        hook, ids = _sender(tmp_path, stub.url, None, n=2)
        hook.config.token_file = str(token_file)
        hook._cycle(0.0, 0.0, False)
        status = json.loads((tmp_path / "spool" / "status.json").read_text())
        assert stub.requests == [] and status["pending"] == 2 and status["no_token"] == 1
        assert status["token_configured"] is False and "WATCHER_NOTEBOOK_TOKEN" in status["last_error"]["message"]
        token_file.write_text(_token(student) + "\n")  # the secret shows up later: no restart needed
        assert hook._cycle(0.0, 1.0, False) == (False, 0.0, 0.0)
    finally:
        stub.close()
    assert [e["event_id"] for e in stub.requests[0][1]] == ids
    assert json.loads((tmp_path / "spool" / "status.json").read_text())["token_configured"] is True
