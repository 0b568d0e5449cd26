"""Real services on loopback for local trials and tests: an Apache Kafka broker and an S3 server.

Nothing here runs in production: the wheel (and so the image) leaves this package out, with its
downloaders; a source checkout has it (`make setup`, or `pip install -e '.[local]'` for the
dependencies). `tabletopic quickstart` and the pytest session fixtures use it.
"""
