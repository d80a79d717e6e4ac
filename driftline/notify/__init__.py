"""``driftline notify``: alerts delivered to webhooks, Slack and commands, once per alert id (faust-streaming)."""
