"""The edges: Prometheus metrics and the websocket signal server."""
