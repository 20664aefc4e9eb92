"""Secrets from the environment: the value itself in ``NAME``, or a file named by ``NAME_FILE``, which is how
Kubernetes Secrets are usually mounted. Shared by the backend's settings and ``watcher notebook token``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class SecretSettingError(ValueError):
    """``setting`` (the variable to fix) has a bad value; ``message`` says what."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting, self.message = setting, message


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """The secret from ``name`` or from the file named by ``name_FILE``; None when neither is set."""
    value = env.get(name)
    file_name = env.get(name + "_FILE")
    if value and file_name:
        raise SecretSettingError(name, f"set either {name} or {name}_FILE, not both")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretSettingError(name + "_FILE", f"cannot read {file_name}: {exc.strerror}") from None
        if not value:
            raise SecretSettingError(name + "_FILE", f"{file_name} is empty")
    return value.strip() if value else None
