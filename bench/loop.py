"""The closed loop, timed: change -> alert -> published model -> served by every node.

Runs the demo scenario (``driftline.demo.loop``) with 10 s windows:
``first_alert_s`` (change to the first alert on the topic),
``published_s`` (change to the retrained version's run record),
``swapped_all_nodes_s`` (change to the first answer from the new version on
every node), ``failed_requests``, the rate the application held beside the
rate asked (``rate_held`` / ``rate_asked``, with ``behind_schedule``), and the
accuracy before and after.
"""

from __future__ import annotations

import logging
import secrets
import sys

from _common import bench_settings, parser, report

from driftline.demo.loop import Loop, Scenario
from driftline.demo.simulator import Traffic


def main() -> None:
    args = parser(__doc__).parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = bench_settings(partitions=2)
    settings = settings.replace(window_seconds=10.0, grace_seconds=1.0, signing_key=secrets.token_hex(16))
    scenario = Scenario(window=10.0, stable=12.0 if args.quick else 30.0, after_swap=4.0 if args.quick else 20.0,
                        traffic=Traffic(rate=150.0))
    loop = Loop(settings, scenario, lambda tag, text: print(f"# [{tag}] {text}", file=sys.stderr))
    try:
        loop.prepare()
        loop.start_services()
        summary = loop.run()
    finally:
        loop.stop_services()
    report({key: summary[key] for key in ("ok", "reason", "first_alert_s", "published_s", "swapped_all_nodes_s",
                                          "failed_requests", "requests", "rate_asked", "rate_held",
                                          "behind_schedule", "accuracy_stale", "accuracy_after")})


if __name__ == "__main__":
    main()
