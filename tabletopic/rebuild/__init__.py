"""`tabletopic rebuild`: a new version of a table built from the log beside the live one, then cut over
(docs/rebuild.md)."""
