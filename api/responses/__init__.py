"""The Responses front door (``/v1/responses``): create, stream, store, retrieve, cancel."""
