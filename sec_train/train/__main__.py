"""`accelerate launch -m sec_train.train --config configs/RECIPE.yaml [key=value ...]`
(or `sec-train train ...`): trains one recipe."""

from __future__ import annotations

import argparse
import logging
import sys

from sec_train.train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, loads the recipe and trains; returns the exit status."""
    parser = argparse.ArgumentParser(prog="sec-train train", description=__doc__)
    parser.add_argument("--config", help="recipe YAML (configs/*.yaml); omitted: the schema defaults")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. max_steps=10"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"sec-train train: {err}", file=sys.stderr)
        return 2
    # sec_train's own INFO lines (e.g. where token_attn's weights came from); other libraries' stay quiet
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("sec_train").setLevel(logging.INFO)
    # imported after the config check so a typo fails fast, before torch and the model load
    from sec_train.train.loop import NonFiniteLossError, Trainer

    try:
        Trainer(cfg).fit()
    except NonFiniteLossError as err:
        print(f"sec-train train: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
