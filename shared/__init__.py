"""Code shared by the API and worker roles: the queue payload, events, errors, config and Redis keys."""
