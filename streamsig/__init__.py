"""streamsig: real-time limit-order-book signals."""
__version__ = "0.1.0"
