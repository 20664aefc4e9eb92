"""A student's burst of work, recorded on the test side, and its exact check against the backend.

Every step writes a NEW source file (exactly one ``file.save`` each, whatever the debounce timing),
overwrites one of three shared files (their FINAL state must be recorded exactly once), and every
``compile_every`` steps compiles the new file with ``gcc -c`` (exactly one ``process.compile`` each).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from system.e2e.session import run, timeline

SHARED = ("main0.c", "main1.c", "main2.c")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Compile:
    source: str
    started: float  # wall clock (time.time())
    ended: float
    exit_code: int


@dataclass
class Burst:
    hw: Path
    student_id: str
    pause: float = 0.25
    compile_every: int = 5
    new_files: dict[str, str] = field(default_factory=dict)  # path -> its only content
    shared_written: dict[str, list[str]] = field(default_factory=dict)  # path -> contents in write order
    compiles: list[Compile] = field(default_factory=list)
    steps: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"burst-{self.student_id}", daemon=True)

    def start(self) -> Burst:
        self.hw.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> Burst:
        self._stop.set()
        self._thread.join(120)
        assert not self.errors, self.errors
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self.pause)
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(repr(exc))

    def step(self) -> None:
        self.steps += 1
        i = self.steps
        name = f"s{i:04d}.c"
        content = f"/* {self.student_id} step {i} */\nint v{i} = {i};\n"
        (self.hw / name).write_text(content)
        self.new_files[name] = content
        shared = SHARED[i % len(SHARED)]
        version = f"/* {self.student_id} {shared} version {i} */\nint main(void) {{ return {i % 7}; }}\n"
        (self.hw / shared).write_text(version)
        self.shared_written.setdefault(shared, []).append(version)
        if i % self.compile_every == 0:
            t0 = time.time()
            rc = run(["gcc", "-c", name, "-o", f"s{i:04d}.o"], self.hw)
            self.compiles.append(Compile(name, t0, time.time(), rc))

    @property
    def final_shared(self) -> dict[str, str]:
        return {p: versions[-1] for p, versions in self.shared_written.items()}

    def expected_save_count_at_least(self) -> int:
        return len(self.new_files) + len(self.shared_written)


def check(http, burst: Burst, compile_may_be_missing=lambda c: False, assignment: str = "hw1") -> dict:
    """Assert the backend holds exactly what the burst did; return a short account for messages."""
    events = timeline(http, burst.student_id, assignment)
    ids = [ev["event_id"] for ev in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    by_type: dict[str, list[dict]] = {}
    for ev in events:
        by_type.setdefault(ev["type"], []).append(ev)
    assert set(by_type) <= {"file.save", "process.compile"}, {t: len(v) for t, v in by_type.items()}
    saves: dict[str, list[str]] = {}
    for ev in by_type.get("file.save", []):
        saves.setdefault(ev["path"], []).append(ev["sha256"])
    # every new file: exactly one save, with the content written
    missing = [p for p in burst.new_files if p not in saves]
    assert not missing, f"{len(missing)} new files without a save, e.g. {missing[:5]}"
    wrong = {p: saves[p] for p, c in burst.new_files.items() if saves[p] != [sha(c)]}
    assert not wrong, f"new files saved other than exactly once: {list(wrong.items())[:5]}"
    # shared files: the final state is the last save and is recorded once; nothing that was never written
    for path, versions in burst.shared_written.items():
        recorded = saves.get(path, [])
        written = {sha(v) for v in versions}
        assert recorded and recorded[-1] == sha(versions[-1]), f"{path}: final state not the last save"
        assert recorded.count(sha(versions[-1])) == 1, (
            f"{path}: final state recorded {recorded.count(sha(versions[-1]))} times"
        )
        assert set(recorded) <= written, f"{path}: a save of content never written"
        assert all(a != b for a, b in zip(recorded, recorded[1:])), f"{path}: the same state recorded twice in a row"
    unexpected = set(saves) - set(burst.new_files) - set(burst.shared_written)
    assert not unexpected, unexpected
    # compiles: exactly once each (or at most once when the test says procmon could not see it)
    compiles: dict[str, list[dict]] = {}
    for ev in by_type.get("process.compile", []):
        compiles.setdefault(ev["sources"][0], []).append(ev)
    missing_compiles = []
    for c in burst.compiles:
        got = compiles.get(c.source, [])
        if compile_may_be_missing(c):
            assert len(got) <= 1, f"compile of {c.source} stored {len(got)} times"
        else:
            if not got:
                missing_compiles.append(c.source)
                continue
            assert len(got) == 1, f"compile of {c.source} stored {len(got)} times"
        if got:
            assert got[0]["exit_code"] == c.exit_code and got[0]["output"] == c.source[:-2] + ".o"
    assert not missing_compiles, f"{len(missing_compiles)} compiles missing, e.g. {missing_compiles[:5]}"
    assert set(compiles) <= {c.source for c in burst.compiles}
    return {
        "saves": sum(map(len, saves.values())),
        "compiles": sum(map(len, compiles.values())),
        "compiles_run": len(burst.compiles),
        "steps": burst.steps,
    }


def wait_and_check(stack, http, bursts: list[Burst], timeout: float = 90, **kw) -> list[dict]:
    """Poll until every burst checks out (events still arriving), then settle and check once more, exactly."""
    from system.e2e.session import settle

    deadline = time.monotonic() + timeout
    while True:
        try:
            [check(http, b, **kw) for b in bursts]
            break
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{exc}\n{diagnostics(stack)}") from None
            time.sleep(0.5)
    settle(stack)
    return [check(http, b, **kw) for b in bursts]


def diagnostics(stack) -> str:
    """The agents' own counters of what they skipped or lost, and where the logs are (for a failure message)."""
    from system.e2e.session import metrics

    keep = (
        "procmon_proc_read_misses",
        "procmon_events_lost",
        "procmon_events_filtered",
        "procmon_events_dropped",
        "procmon_invalid",
        "procmon_argv_missing",
        "procmon_kernel_events",
        "procmon_cwd_from_parent",
        "filemon_files_skipped",
        "filemon_errors",
        "filemon_outbox_unavailable",
        "watcher_dead_letters_total",
    )
    lines = [f"logs: {stack.data_dir / 'logs'}"]
    for agent in ("filemon", "procmon"):
        try:
            m = metrics(stack, agent)
        except Exception as exc:  # noqa: BLE001 - best effort, for the message only
            lines.append(f"{agent}: metrics unavailable ({exc})")
            continue
        lines.append(
            f"{agent}: "
            + ", ".join(
                f"{k}={v:g}" for k, v in sorted(m.items()) if k.startswith(keep) and not k.endswith("_created") and v
            )
        )
    return "\n".join(lines)
