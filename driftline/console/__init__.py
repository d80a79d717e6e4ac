"""``driftline ui``: a live, read-only web console over the topics (see :mod:`driftline.console.state`)."""
