"""A scripted class for the dashboard's browser tests: real ingest over HTTP into a running backend, with
every saved version's content written to its snapshot store (as filemon would), so code and diffs open.

Course ``os``, sections 1 and 2, assignments hw1 and hw2. In os/1/hw1:

* ``S_STUCK`` ends with four failing compiles in a row (the backend under test flags three as stuck);
* ``S_PASTE`` grows ``main.c`` by about 1,500 bytes in one save (a large paste at 1,000 bytes);
* ``S_STEADY`` writes ``main.c`` in five saves and ``util.h`` in two, compiling and running in between;
  its versions of ``main.c`` are ``STEADY_VERSIONS`` (the replay and the diff check against them).

Section 2 has one student of its own (``S_OTHER_SECTION``), whom a token scoped to section 1 must not see.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.backend import BackendHandle, wire_event
from watcher_core import snapshots

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 in Seoul
S_STUCK, S_PASTE, S_STEADY, S_OTHER_SECTION = "202600001", "202600002", "202600003", "202600009"

STEADY_VERSIONS = [
    "#include <stdio.h>\n\nint main(void) {\n    return 0;\n}\n",
    '#include <stdio.h>\n\nint main(void) {\n    printf("hello\\n");\n    return 0;\n}\n',
    '#include <stdio.h>\n#include "util.h"\n\nint main(void) {\n    printf("hello\\n");\n    return square(3);\n}\n',
    '#include <stdio.h>\n#include "util.h"\n\nint main(void) {\n    int n = square(3);\n'
    '    printf("%d\\n", n);\n    return 0;\n}\n',
    '#include <stdio.h>\n#include "util.h"\n\nint main(void) {\n    for (int i = 0; i < 3; i++) {\n'
    '        printf("%d\\n", square(i));\n    }\n    return 0;\n}\n',
]
UTIL_VERSIONS = ["int square(int x);\n", "static inline int square(int x) { return x * x; }\n"]
PASTE = "".join(f"int helper_{i}(int x) {{ return x + {i}; }}\n" for i in range(40))


class Script:
    """One student's events, in time order, with their contents stored as they are saved."""

    def __init__(self, backend: BackendHandle, student: str, section: str, assignment: str, start: datetime):
        self.backend, self.t = backend, start
        self.fields = dict(course="os", section=section, assignment=assignment, student_id=student)
        self.events: list[dict] = []
        self.previous: dict[str, str] = {}

    def tick(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t

    def save(self, path: str, text: str, after: float = 30) -> None:
        data = text.encode()
        sha, _ = snapshots.write_snapshot(self.backend.snapshot_dir, data, previous=self.previous.get(path))
        self.previous[path] = sha
        self.events.append(
            wire_event("file.save", **self.fields, path=path, sha256=sha, size=len(data), timestamp=self.tick(after))
        )

    def compile(self, ok: bool, after: float = 10) -> None:
        argv = ["gcc", "-Wall", "-o", "main", "main.c"]
        self.events.append(
            wire_event(
                "process.compile", **self.fields, argv=argv, exit_code=0 if ok else 1, timestamp=self.tick(after)
            )
        )

    def run(self, exit_code: int | None = 0, signal: int | None = None, after: float = 5) -> None:
        self.events.append(
            wire_event("process.run", **self.fields, exit_code=exit_code, signal=signal, timestamp=self.tick(after))
        )

    def send(self) -> None:
        res = self.backend.post_events(self.events)
        assert res.status_code == 200, res.text
        assert res.json()["accepted"] == len(self.events), res.text


def seed(backend: BackendHandle) -> None:
    """Store the whole class through the backend's ingest API."""
    steady = Script(backend, S_STEADY, "1", "hw1", T0)
    steady.save("util.h", UTIL_VERSIONS[0], after=0)
    for i, text in enumerate(STEADY_VERSIONS):
        steady.save("main.c", text, after=120)
        steady.compile(ok=i != 2)
        if i != 2:
            steady.run(exit_code=0 if i != 3 else None, signal=11 if i == 3 else None)
        if i == 1:
            steady.save("util.h", UTIL_VERSIONS[1])
    steady.send()

    stuck = Script(backend, S_STUCK, "1", "hw1", T0 + timedelta(minutes=20))
    stuck.save("main.c", STEADY_VERSIONS[0], after=0)
    stuck.compile(ok=True)
    for n in range(4):
        stuck.save("main.c", STEADY_VERSIONS[0] + f"int broken{n}(\n", after=60)
        stuck.compile(ok=False)
    stuck.send()

    paste = Script(backend, S_PASTE, "1", "hw1", T0 + timedelta(hours=3))
    paste.save("main.c", STEADY_VERSIONS[0], after=0)
    paste.save("main.c", STEADY_VERSIONS[0] + PASTE, after=45)
    paste.compile(ok=True)
    paste.run()
    paste.send()

    hw2 = Script(backend, S_STEADY, "1", "hw2", T0 + timedelta(days=1))
    hw2.save("list.c", "struct node { int v; struct node *next; };\n", after=0)
    hw2.compile(ok=True)
    hw2.send()

    other = Script(backend, S_OTHER_SECTION, "2", "hw1", T0 + timedelta(hours=1))
    other.save("main.c", STEADY_VERSIONS[1], after=0)
    other.compile(ok=True)
    other.run()
    other.send()
