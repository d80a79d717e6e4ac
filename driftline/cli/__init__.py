"""``driftline``, the one CLI: each subcommand in its own ``*_cmd`` module; ``main`` is the composition root."""
