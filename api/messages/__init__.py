"""The Anthropic Messages front door (``POST /v1/messages``, ``/v1/messages/count_tokens``), for Claude Code."""
