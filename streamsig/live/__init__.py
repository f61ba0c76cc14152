"""The Kafka driver of streamsig (a sibling of :mod:`streamsig.backtest`, importing neither it nor the CLI).

- :mod:`.worker` — the Faust worker: book frames in, signal frames out, bad
  input to the dead-letter topic;
- :mod:`.trader` — the live paper trader: book and signal frames in, fills and
  P&L out;
- :mod:`.producer` — replays feeds onto the book topic, framed and paced;
- :mod:`.config` — ``StreamConfig``, the Faust app built from it, worker
  start/stop; :mod:`.broker` — the embedded Tansu broker and ``resolve_kafka``;
- :mod:`.health` — what the live processes report about themselves (consumer
  lag, broker probes, model scores);
- :mod:`.demo` — broker, producer, worker, trader, server and metrics in one
  process.

Codecs and topic names live in :mod:`streamsig.wire`, metric objects in
:mod:`streamsig.telemetry`. Submodules are imported explicitly so that
``import streamsig.live`` stays cheap.
"""
