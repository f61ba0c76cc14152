"""Book events and records, the order book, and the data readers.

:mod:`.events` (the event layout, flags, reason codes), :mod:`.records` (signal,
fill and round-trip dtypes), :mod:`.book` (the order book), :mod:`.levels`
(level snapshots to events), :mod:`.csvchunks` (chunked CSV reading),
:mod:`.lobster`, :mod:`.crypto` and :mod:`.synthetic` (readers and the
generator), :mod:`.sources` (``open_feeds`` for any source).
"""
