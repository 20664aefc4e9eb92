"""What procmon learns per cgroup (a container): whether it is a student's, and which student's.

* The in-kernel filter: a cgroup with a student process is marked "student" at once; a cgroup that
  shows only other processes for ``learn_seconds`` is marked "not a student's" and the kernel drops its
  events from then on, until the verdict expires (``ignore_ttl``) and is learnt again.
* The owner: a pod's container is one student's, named by its first process seen with a pod name. A
  process of that cgroup that claims another student (its own UTS namespace named after a classmate's
  pod, a mount namespace with a classmate's workspace path) is not recorded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from watcher_agents.procmon.attribution import NOT_STUDENT, OTHER_STUDENTS_CGROUP, Attributed, Attributor, Skip, resolve
from watcher_agents.procmon.events import ExecEvent
from watcher_agents.procmon.tracer import VERDICT_IGNORE, VERDICT_STUDENT, Tracer
from watcher_core import identity

log = logging.getLogger(__name__)

ROOT_CGROUP_ID = 1  # cgroup v2 root (and every process on a cgroup-v1-only host): never filtered
MAX_CGROUPS = 65536


class CgroupLearner:
    """Per cgroup: student, not a student's (filtered in the kernel), or still learning; and its owner."""

    def __init__(
        self, tracer: Tracer, attributor: Attributor, learn_seconds: float, ignore_ttl: float, enabled: bool
    ) -> None:
        self.tracer, self.attributor = tracer, attributor
        self.learn_seconds, self.ignore_ttl, self.enabled = learn_seconds, ignore_ttl, enabled
        self.student: set[int] = set()
        self.first_seen: dict[int, float] = {}
        self.ignored: dict[int, float] = {}  # cgroup -> when the verdict expires
        self.owners: OrderedDict[int, identity.Student] = OrderedDict()  # cgroup -> its first student
        self._forgers: set[int] = set()  # cgroups whose processes claimed another student (logged once)

    # --- the in-kernel filter ----------------------------------------------------------------------

    def saw(self, cgroup_id: int, is_student: bool, now: float) -> None:
        if not cgroup_id:
            return
        if is_student:
            if cgroup_id not in self.student:
                self.student.add(cgroup_id)
                self.first_seen.pop(cgroup_id, None)
                self.tracer.set_cgroup_verdict(cgroup_id, VERDICT_STUDENT)
            return
        if not self.enabled or cgroup_id in self.student or cgroup_id == ROOT_CGROUP_ID:
            return
        first = self.first_seen.setdefault(cgroup_id, now)
        if now - first >= self.learn_seconds and cgroup_id not in self.ignored:
            self.ignored[cgroup_id] = now + self.ignore_ttl
            self.tracer.set_cgroup_verdict(cgroup_id, VERDICT_IGNORE)
            log.debug("cgroup %d: no student process in %.0f s, filtered in the kernel", cgroup_id, now - first)
        if len(self.first_seen) > MAX_CGROUPS:
            self.first_seen.clear()

    def expire(self, now: float) -> None:
        for cg, until in list(self.ignored.items()):
            if now >= until:
                del self.ignored[cg]
                self.first_seen.pop(cg, None)
                self.tracer.set_cgroup_verdict(cg, None)

    def counts(self) -> dict[str, int]:
        return {
            "student": len(self.student),
            "ignored": len(self.ignored),
            "learning": len(set(self.first_seen) - set(self.ignored)),
        }

    # --- the owner ---------------------------------------------------------------------------------

    def claim(self, ev: ExecEvent, result: Attributed | Skip) -> Attributed | Skip:
        """The record of a process whose cgroup belongs to another student is refused. Every process of a
        student pod (code-server and its shells too, not only compiles and runs) teaches its cgroup's
        owner, so the container's genuine processes name it long before the student could forge one."""
        if not ev.cgroup_id:
            return result
        if isinstance(result, Attributed):
            student, view = result.student, result.view
        elif result.reason == NOT_STUDENT:
            return result
        else:
            ctx = self.attributor.context(ev.hostname, ev.cwd, resolve(ev.filename, ev.cwd))
            if ctx is None:
                return result
            student, view = ctx.student, ctx.view
        if self.owned_by(ev.cgroup_id, student, pod=view == "pod"):
            return result
        log.log(
            logging.DEBUG if ev.cgroup_id in self._forgers else logging.WARNING,  # once per cgroup
            "pid %d %s claims %s, but its cgroup %d is %s's: not recorded",
            ev.pid,
            ev.filename,
            student.dirname,
            ev.cgroup_id,
            self.owners[ev.cgroup_id].dirname,
        )
        self._forgers.add(ev.cgroup_id)
        return Skip(OTHER_STUDENTS_CGROUP) if isinstance(result, Attributed) else result

    def owned_by(self, cgroup_id: int, student: identity.Student, *, pod: bool) -> bool:
        """May a process of this cgroup be recorded as ``student``? A pod's container is one student's:
        its first process seen with a pod name names them (code-server, with the pod's own hostname).
        The hostname is read per UTS namespace, and in a user namespace a student can make their own
        named after a classmate's pod, or a mount namespace with a classmate's workspace path; the
        cgroup they cannot leave. Only a pod name (``pod``) teaches the owner: on a plain host one shell
        may work in several students' folders (``watcher demo`` plays two students from one process).
        The root cgroup is anyone's."""
        if not cgroup_id or cgroup_id == ROOT_CGROUP_ID:
            return True
        owner = self.owners.get(cgroup_id)
        if owner is None:
            if not pod:
                return True
            self.owners[cgroup_id] = student
            if len(self.owners) > MAX_CGROUPS:
                self.owners.popitem(last=False)
            return True
        return owner == student
