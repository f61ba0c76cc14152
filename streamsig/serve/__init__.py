"""The websocket signal server (:mod:`.ws`) and the live page served beside it (:mod:`.page`); the Prometheus
metric objects live in :mod:`streamsig.telemetry`."""
