"""Rollout order (pure): the backend is upgraded before the agents.

A newer agent may send what an older backend does not know (a new event field, a compressed snapshot),
and an older backend answers that with 4xx. So when the version changes, the backend Deployment goes
first and every agent DaemonSet already running another version keeps its old spec until the backend
Deployment has rolled out: the controller has seen its latest spec, every replica is updated, no old
pod is left and the updated ones are available (what `kubectl rollout status` waits for).

The reconciler reads the live objects; the decision is made here from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True)
class BackendRollout:
    """The live backend Deployment, as far as the rollout order needs it."""

    image: str  # the backend container's image in the live spec
    generation: int
    observed_generation: int
    replicas: int  # spec.replicas
    updated: int  # status.updatedReplicas
    total: int  # status.replicas: old and new pods
    available: int  # status.availableReplicas

    @classmethod
    def from_deployment(cls, dep: dict, container: str = "backend") -> BackendRollout:
        spec, st = dep.get("spec") or {}, dep.get("status") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        image = next((c.get("image", "") for c in containers if c.get("name") == container), "")
        return cls(
            image=image,
            generation=int((dep.get("metadata") or {}).get("generation") or 0),
            observed_generation=int(st.get("observedGeneration") or 0),
            replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
            updated=int(st.get("updatedReplicas") or 0),
            total=int(st.get("replicas") or 0),
            available=int(st.get("availableReplicas") or 0),
        )

    @property
    def complete(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.updated >= self.replicas
            and self.total <= self.updated
            and self.available >= self.updated
        )

    def progress(self) -> str:
        if self.observed_generation < self.generation:
            return "its controller has not observed the new spec yet"
        return f"{self.updated}/{self.replicas} replicas updated, {self.available} available, {self.total} in all"


@dataclass(frozen=True)
class Hold:
    """Agent DaemonSets kept at their live spec, and why (the Progressing condition's message)."""

    components: tuple[str, ...]
    message: str


def agents_held(
    backend_image: str,
    backend: BackendRollout | None,
    live_versions: dict[str, str | None],
    wanted_versions: dict[str, str],
    backend_name: str,
) -> Hold | None:
    """Which agents wait for the backend. `backend_image`: the image the spec asks for; `backend`: the
    live Deployment (None: absent); `live_versions`: the version label of each agent DaemonSet that
    exists (None: it has no label, e.g. made by an older operator); `wanted_versions`: the version each
    agent should run.

    An agent already at the wanted version is never held (drift repair goes on), nor one that does not
    exist yet (a fresh install has no old version to keep; its outbox waits for the backend)."""
    behind = tuple(c for c, live in live_versions.items() if live != wanted_versions.get(c))
    if not behind:
        return None
    if backend is not None and backend.image == backend_image and backend.complete:
        return None
    if backend is None:
        why = f"backend Deployment {backend_name} does not exist yet"
    elif backend.image != backend_image:
        why = f"backend Deployment {backend_name} still runs {backend.image}"
    else:
        why = f"backend Deployment {backend_name} is rolling out {backend_image}: {backend.progress()}"
    stay = ", ".join(f"{c} at {live_versions[c] or 'its old version'}" for c in behind)
    return Hold(behind, f"{why}; the agents are upgraded after it ({stay} until then)")
