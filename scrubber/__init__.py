"""scrubber: batch claim scrubbing for Medicare professional claims."""
__version__ = "0.1.0"
