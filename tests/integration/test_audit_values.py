"""`audit --values` against a real broker and table: it passes on a good table, compares the same sample on
every run, and catches rows whose values were swapped while every offset stays in place."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from tests.support import (
    assert_values_equal,
    audit_cli,
    audit_values_cli,
    catalog_of,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

PARTITIONS = 2


def test_values_audit_catches_swapped_values_that_the_offset_audit_passes(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "audit.swapped"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, [
        (n % PARTITIONS, f"k{n}".encode(), json.dumps({"n": n, "s": f"v{n}", "d": {"x": n / 2}}).encode(),
         [("h", str(n).encode())] if n % 5 == 0 else None)
        for n in range(400)])
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0, writer.log()
    assert_values_equal(audit_values_cli(config, topic, table))

    sampled = [audit_values_cli(config, topic, table, "--sample", "0.3") for _ in range(2)]
    lines = [[line for line in run.stdout.splitlines() if line.startswith("values")] for run in sampled]
    assert lines[0] == lines[1] and "a 0.3 sample" in lines[0][0], sampled[0].stdout
    assert_values_equal(sampled[0])

    # Offsets 17 and 18 of partition 1 trade their values (as a decoder pairing rows with the wrong
    # records would have it); every offset is still there once.
    loaded = iceberg.load_table(table)
    rows = loaded.scan().to_arrow()
    at = {offset: i for i, (partition, offset) in enumerate(zip(rows["_kafka_partition"].to_pylist(),
                                                                  rows["_kafka_offset"].to_pylist(), strict=True))
          if partition == 1}
    order = list(range(rows.num_rows))
    order[at[17]], order[at[18]] = at[18], at[17]
    swapped = rows.set_column(rows.schema.get_field_index("n"), rows.schema.field("n"),
                              pc.take(rows["n"], pa.array(order)))
    loaded.overwrite(swapped)

    assert audit_cli(config, topic, table).returncode == 0  # offsets alone cannot see it
    caught = audit_values_cli(config, topic, table)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "2 differ" in caught.stdout
    assert "partition 1 offset 17 column n: table 37 vs topic 35" in caught.stdout, caught.stdout
    assert "partition 1 offset 18 column n: table 35 vs topic 37" in caught.stdout, caught.stdout
