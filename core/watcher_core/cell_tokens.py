"""Per-student notebook credentials: a token that lets one student's kernel send its own cell runs, nothing else.

The notebook hook runs inside the student's pod, so whatever credential it holds the student can read.
An ingest token there would let a student write anyone's saves, compiles and runs. Instead the pod gets a
token derived from one secret key (``WATCHER_NOTEBOOK_KEY``, known to the backend and to whoever generates
the student pods) and the student's identity::

    nb1.<course>.<section>.<student_id>.<mac>
    mac = base64url, unpadded, of HMAC-SHA256(key, "nb1\\n<course>\\n<section>\\n<student_id>")

The backend recomputes the MAC, so it keeps no list of tokens, and a token admits only ``notebook.cell``
events of the student it names (``watcher_backend.auth``). ``.`` cannot occur in a course, section or
student id, so the token splits unambiguously. Rotating the key invalidates every token at once.

Generate one with ``watcher notebook-token --course os --section 1 --student 202012345`` (reads the key
from ``WATCHER_NOTEBOOK_KEY`` or ``WATCHER_NOTEBOOK_KEY_FILE``), or compute it in the pod generator (the
JCode platform is Kotlin: ``javax.crypto.Mac`` "HmacSHA256", ``Base64.getUrlEncoder().withoutPadding()``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from watcher_core import identity

PREFIX = "nb1"
MIN_KEY_LENGTH = 32


def _mac(key: str, student: identity.Student) -> str:
    message = f"{PREFIX}\n{student.course}\n{student.section}\n{student.student_id}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def derive(key: str, student: identity.Student) -> str:
    """The notebook token of ``student`` under ``key``."""
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"the notebook key must be at least {MIN_KEY_LENGTH} characters")
    return ".".join((PREFIX, student.course, student.section, student.student_id, _mac(key, student)))


def looks_like(token: str) -> bool:
    """True if ``token`` has the form of a notebook token (it may still be forged)."""
    return token.startswith(PREFIX + ".")


def verify(key: str | None, token: str) -> identity.Student | None:
    """The student a genuine token names, or None (wrong form, unknown student format, bad MAC, no key)."""
    if not key:
        return None
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != PREFIX:
        return None
    _, course, section, student_id, mac = parts
    if not (
        identity.COURSE_RE.fullmatch(course)
        and identity.SECTION_RE.fullmatch(section)
        and identity.STUDENT_ID_RE.fullmatch(student_id)
    ):
        return None
    student = identity.Student(course, section, student_id)
    return student if hmac.compare_digest(mac.encode(), _mac(key, student).encode()) else None
