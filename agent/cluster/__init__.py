"""``voice-agent cluster``: the front door and N agents on one machine (see supervisor)."""
