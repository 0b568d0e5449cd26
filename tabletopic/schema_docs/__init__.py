"""Reference files generated from the config model: docs/configuration.md and the chart's values.schema.json."""
