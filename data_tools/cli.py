"""`sec-data synth|convert|verify|stats`: building and checking training shards."""

from __future__ import annotations

import importlib
import sys

_COMMANDS = {
    "synth": ("data_tools.synth", "procedural videos as DAVIS-style folders, shards and SA-V style"),
    "convert": ("data_tools.convert", "sav|davis|ytvos|mose|custom -> shards"),
    "verify": ("data_tools.verify", "decode every sample of a shard directory"),
    "stats": ("data_tools.stats", "videos, objects, frames, resolution and visibility histograms"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS:
        print("usage: sec-data COMMAND [args]\n", file=sys.stderr)
        for name, (_, help_text) in _COMMANDS.items():
            print(f"  {name:<8} {help_text}", file=sys.stderr)
        return 2
    return importlib.import_module(_COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
