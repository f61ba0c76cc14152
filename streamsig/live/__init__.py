"""Kafka side of streamsig.

- ``broker``: the embedded Tansu broker and ``resolve_kafka``.
- ``topics``: topic names and ``ensure_topics``.
- ``frames``: the frame codec, dead-letter records and the ``Framer``.
- ``config``: ``StreamConfig``, the Faust app built from it, worker start/stop.

Submodules are imported explicitly so that ``import streamsig.live`` stays cheap.
"""
