"""The worker role: takes generation jobs off the queue, calls providers, reports events."""
