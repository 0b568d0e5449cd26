"""Table maintenance: compaction, snapshot expiry, orphan-file cleanup (issue 6)."""
