"""Getting a generation to a worker and its events back to the client: queueing, the relay, the SSE writer."""
