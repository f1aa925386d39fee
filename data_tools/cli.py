"""`sec-data synth|convert|verify|stats`: building and checking training shards."""

from __future__ import annotations

import sys

from sec_train.commands import run_command

_COMMANDS = {
    "synth": ("data_tools.synth", "procedural videos as DAVIS-style folders, shards and SA-V style"),
    "convert": ("data_tools.convert", "sav|davis|ytvos|mose|custom -> shards"),
    "verify": ("data_tools.verify", "decode every sample of a shard directory"),
    "stats": ("data_tools.stats", "videos, objects, frames, resolution and visibility histograms"),
}


def main(argv: list[str] | None = None) -> int:
    return run_command("sec-data", _COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
