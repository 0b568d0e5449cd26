"""The only subpackage that imports confluent_kafka. The rest of tabletopic sees RecordChunk."""
