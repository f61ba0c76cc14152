"""The websocket signal server (:mod:`.ws`); the Prometheus metric objects live in :mod:`streamsig.telemetry`."""
