"""What the hot path and the learner both read: settings, the wire formats, tokens, JSON.

Below `proxy/` and `learner/`, above `store/`: nothing here imports either of them, so the
learner never reaches into the hot path and the hot path never loads the learner.
"""
