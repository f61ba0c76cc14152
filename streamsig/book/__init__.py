"""Book events, the order book, validation and data readers."""
