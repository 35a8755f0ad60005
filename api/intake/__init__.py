"""What every front door does with a request before it is queued: decode it, bound its size, find its session."""
