"""The composition root: the app factory, the admin API, the CLI and the learner's schedule.

It is the only package that imports both `proxy/` (the hot path) and `learner/` (background
work) and wires them to one store; nothing below imports it.
"""
