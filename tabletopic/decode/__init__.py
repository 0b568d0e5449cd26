"""Record values → Arrow tables, a batch at a time: JSON, Avro (Confluent wire format), raw bytes."""
