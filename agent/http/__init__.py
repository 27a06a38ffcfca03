"""The agent's one HTTP listener (``[http]``): health, readiness and metrics today."""
