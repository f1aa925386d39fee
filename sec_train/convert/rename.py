"""Two-way key renaming between two checkpoint layouts, written once as a table of templates.

A rule is a pair of templates `(original, ours)`. `{}` stands for one name part (a layer index
or a sub-module name) and carries over to the other side in order. A template ending in "."
renames a module prefix (the rest of the key is kept); any other template is a whole key.
The first matching rule wins, so specific rules go before the catch-all prefix ones.
"""

from __future__ import annotations

import re

_PART = "([^.]+)"


def _compile(template: str) -> re.Pattern[str]:
    body = _PART.join(re.escape(piece) for piece in template.split("{}"))
    return re.compile(body if template.endswith(".") else body + r"\Z")


class Renamer:
    """Maps keys from an original layout to ours (`forward`) and back (`backward`).

    Args:
        rules (`list[tuple[str, str]]`): `(original, ours)` template pairs, most specific first.
    """

    def __init__(self, rules: list[tuple[str, str]]):
        for original, ours in rules:
            if original.count("{}") != ours.count("{}") or original.endswith(".") != ours.endswith("."):
                raise ValueError(f"rename rule {original!r} -> {ours!r} does not pair up")
        self._forward = [(_compile(original), ours) for original, ours in rules]
        self._backward = [(_compile(ours), original) for original, ours in rules]

    @staticmethod
    def _apply(table: list[tuple[re.Pattern[str], str]], key: str) -> str | None:
        for pattern, target in table:
            match = pattern.match(key)
            if match is not None:
                return target.format(*match.groups()) + key[match.end() :]
        return None

    def forward(self, key: str) -> str | None:
        """The name of an original key in our layout, or None when no rule covers it."""
        return self._apply(self._forward, key)

    def backward(self, key: str) -> str | None:
        """The original name of one of our keys, or None when no rule covers it."""
        return self._apply(self._backward, key)
