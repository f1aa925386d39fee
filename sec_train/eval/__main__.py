"""`python -m sec_train.eval ...` (what `accelerate launch -m sec_train.eval` runs): `sec-train eval`."""

import sys

from sec_train.eval.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
