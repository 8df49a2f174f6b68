"""The admin API under `/admin/`: skillbooks, skills, traces, for people and their tools."""
