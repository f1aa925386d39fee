"""`python -m sec_train.bench data|step|model [--json] ...`: benchmarks that print ratios
against a baseline measured in the same process."""

from __future__ import annotations

import importlib
import sys

_BENCHES = {"data": "sec_train.bench.data", "step": "sec_train.bench.step", "model": "sec_train.bench.model"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _BENCHES:
        print(f"usage: python -m sec_train.bench {{{'|'.join(_BENCHES)}}} [--json] ...", file=sys.stderr)
        return 2
    return importlib.import_module(_BENCHES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
