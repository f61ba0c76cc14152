"""What travels over Kafka: :mod:`.frames` (book frames and dead-letter records),
:mod:`.signals` (signal frames) and :mod:`.topics` (topic names and creation)."""
