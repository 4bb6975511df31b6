"""Identities and the patterns the service config grants access to.

An identity is `user:<email>` (a person's Google ID token) or
`serviceAccount:<email>` (a service account's). A pattern is an identity,
the same with `*` as the whole local part (`user:*@example.com`: anyone of
that domain, of that kind only), or `group:<name>` (a group of settings.toml,
itself a list of patterns that are not groups). Emails compare without case,
as Google's do.

Matching is by lookup, never by scanning: an identity is matched by exactly
two patterns, itself and its domain's wildcard (`candidates`), so checking
a list of patterns or a group's members costs one set lookup each.
"""

from __future__ import annotations

import re
from typing import Container

USER, SERVICE_ACCOUNT, GROUP = "user", "serviceAccount", "group"
IDENTITY_KINDS = (USER, SERVICE_ACCOUNT)
GROUP_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
#: One `@`, no space, no `*` (which only a pattern's local part may be, whole).
_EMAIL_RE = re.compile(r"[^@\s*]+@[^@\s*]+")


def is_email(text: str) -> bool:
    return bool(_EMAIL_RE.fullmatch(text))


def email_problem(email: str) -> str | None:
    """Why `email` is not an email address, or None."""
    return None if is_email(email) else f"{email!r} is not an email address (one '@', no space or '*')"


def pattern_problem(pattern: str, groups: Container[str]) -> str | None:
    """Why `pattern` is not a pattern, or None; `groups` holds the names a `group:` may name."""
    kind, sep, rest = pattern.partition(":")
    if kind == GROUP and sep:
        if not GROUP_NAME_RE.fullmatch(rest):
            return f"{pattern!r}: a group name is 1 to 100 of A-Z a-z 0-9 _ . @ -"
        return None if rest in groups else f"{pattern!r}: no group {rest!r} in settings.toml"
    if kind not in IDENTITY_KINDS or not sep:
        return f"{pattern!r} must start with one of user:, serviceAccount:, group:"
    if not is_email("x" + rest[1:] if rest.startswith("*@") else rest):
        return (f"{pattern!r}: not an email address after '{kind}:' (one '@', no space; '*' only as the whole "
                "part before the '@')")
    return None


def normal(pattern: str) -> str:
    """The pattern with its email in lower case (a group name keeps its case)."""
    kind, _, rest = pattern.partition(":")
    return pattern if kind == GROUP else f"{kind}:{rest.lower()}"


def candidates(identity: str) -> frozenset[str]:
    """The patterns (not groups) that match `identity`: itself and its domain's
    wildcard, in normal form; none for what is not an identity (a pattern
    given as an identity matches nothing)."""
    kind, _, email = identity.partition(":")
    if kind not in IDENTITY_KINDS or not is_email(email):
        return frozenset()
    email = email.lower()
    return frozenset({f"{kind}:{email}", f"{kind}:*@{email.partition('@')[2]}"})
