"""Token comparison (docs/security.md): a presented token is compared with ``hmac.compare_digest``
against EVERY configured token, so neither how much of a token is right nor which scope it belongs to
shows in the time an answer takes. Behaviour first (near misses are refused), then what is called: the
calls are observed with a profiler hook, nothing is patched, and the code is read for a plain ``==``."""

from __future__ import annotations

import ast
import hmac
import inspect
import sys
import textwrap

import pytest

from watcher_backend import auth
from watcher_backend.settings import Settings

TOKENS = {"ingest": "ingest-" + "a1" * 16, "read": "read-" + "b2" * 16, "admin": "admin-" + "c3" * 16}
SETTINGS = Settings(tokens=TOKENS)


def _flip(token: str, index: int) -> str:
    c = token[index]
    return token[:index] + ("x" if c != "x" else "y") + token[index + 1 :]


@pytest.mark.parametrize("scope", sorted(TOKENS))
def test_a_token_wrong_only_in_its_last_or_first_byte_is_refused(scope):
    token = TOKENS[scope]
    assert auth.scopes_of(token, SETTINGS)  # the genuine one is known
    for wrong in (_flip(token, -1), _flip(token, 0), token[:-1], token + "x", token.upper()):
        assert auth.scopes_of(wrong, SETTINGS) is None, wrong


def digest_calls(token: str | None) -> list[tuple]:
    """Every call of ``hmac.compare_digest`` made while ``scopes_of`` decides about ``token``."""
    seen: list = []

    def profile(frame, event, arg):
        if event == "c_call" and arg is hmac.compare_digest:
            seen.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        auth.scopes_of(token, SETTINGS)
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.parametrize(
    "token",
    [TOKENS["ingest"], TOKENS["admin"], _flip(TOKENS["read"], -1), _flip(TOKENS["read"], 0), "unknown"],
    ids=["first configured", "last configured", "last byte wrong", "first byte wrong", "unknown"],
)
def test_every_configured_token_is_compared_with_compare_digest_whatever_matches(token):
    # the same number of constant-time comparisons whether the token matches the first, the last or none
    assert digest_calls(token) == ["scopes_of"] * len(TOKENS)


def test_the_auth_module_never_compares_a_token_with_a_plain_operator():
    tree = ast.parse(textwrap.dedent(inspect.getsource(auth)))
    token_names = {"token", "presented", "configured", "credentials"}

    def mentions_token(node: ast.AST) -> bool:
        return any(
            (isinstance(n, ast.Name) and n.id in token_names)
            or (isinstance(n, ast.Attribute) and n.attr in token_names)
            for n in ast.walk(node)
        )

    plain = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops)
        and any(mentions_token(side) for side in (node.left, *node.comparators))
    ]
    assert plain == [], f"tokens compared with a plain operator (timing leaks how much matched): {plain}"
    # and the loop over the configured tokens never leaves early
    (fn,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "scopes_of"]
    (loop,) = [n for n in ast.walk(fn) if isinstance(n, ast.For)]
    assert "settings.tokens" in ast.unparse(loop.iter)
    assert not [n for n in ast.walk(loop) if isinstance(n, ast.Break | ast.Return)]
