"""The Chat Completions front door (``POST /v1/chat/completions``)."""
