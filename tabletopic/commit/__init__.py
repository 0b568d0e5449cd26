"""The exactly-once protocol: offset maps and verdicts (pure), buffers (pure), the committer (I/O)."""
