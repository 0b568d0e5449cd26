"""Upsert tables: a keyed topic (or a Debezium CDC stream) as the current state per key. Pure decisions only."""
