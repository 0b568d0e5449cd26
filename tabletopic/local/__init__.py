"""Real services on loopback for local trials and tests: an Apache Kafka broker and an S3 server.

Nothing here runs in production; `tabletopic quickstart` and the pytest session fixture use it.
"""
