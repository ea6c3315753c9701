"""`edgeagent ingest`: results and health from MQTT into PostgreSQL (workstation side, 3.8+).

N consumers share `$share/<group>/<prefix>/+/results` and `.../health` (MQTT 5 shared
subscriptions, persistent sessions, QoS 1). Each message is acknowledged only after its row
is committed, and rows are keyed on (device_id, boot_id, seq) with "on conflict do nothing",
so redelivery and several consumers never duplicate a row and a crash never loses one.
docs/ingest.md tells the whole story; docs/mqtt.md the contract it relies on.

    rows.py      topic + payload -> a row (or a reason to reject it); no I/O
    store.py     PostgreSQL: tables, idempotent batch inserts, gaps
    consumer.py  one MQTT 5 connection feeding one writer thread with its own DB connection
    cli.py       `edgeagent ingest run | gaps`
"""
