"""An independent consumer of our Kafka message values, as a Python service would
write it with fastavro: the writer schema is looked up by the single-object header's
fingerprint (fastavro's own CRC-64-AVRO of its Parsing Canonical Form) among the
.avsc files of schemas/avro, and resolved to the newest version of its record type.
Run by crates/vero-model/tests/independent_decoders.rs:

    python3 fastavro_decode.py <schemas dir> <messages dir>

Prints `fingerprint <file> <hex>` for every schema (wire byte order), then per message
file either `ok <file> <record as JSON>` or `error <file> <reason>`. Exits non-zero only
when it cannot start (fastavro missing included).
"""

import datetime
import io
import json
import pathlib
import sys
import uuid

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def plain(value):
    """fastavro's logical-type objects back to their wire values (uuid string, ms)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    raise TypeError(f"unexpected {type(value)}")


def main(schemas_dir, messages_dir):
    by_fingerprint = {}
    newest = {}
    for path in sorted(pathlib.Path(schemas_dir).glob("*.avsc")):
        schema = fastavro.parse_schema(json.loads(path.read_text()))
        fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        print(f"fingerprint {path.name} {fp}")
        record_type = path.name.split(".")[0]
        by_fingerprint[bytes.fromhex(fp)] = (record_type, schema)
        newest[record_type] = schema  # sorted: the last version wins
    for path in sorted(pathlib.Path(messages_dir).glob("*.bin")):
        data = path.read_bytes()
        if data[:2] != b"\xc3\x01":
            print(f"error {path.name} not a single-object message")
            continue
        found = by_fingerprint.get(data[2:10])
        if found is None:
            print(f"error {path.name} unknown schema fingerprint {data[2:10].hex()}")
            continue
        record_type, writer = found
        try:
            record = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, newest[record_type])
        except Exception as e:  # report, as for any other message
            print(f"error {path.name} {e!r}")
            continue
        print(f"ok {path.name} {json.dumps(record, default=plain, ensure_ascii=False)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
