"""`skillproxy eval`: measure whether learned skills make an agent better (τ²-bench harness)."""
