"""The Zipkin-compatible core of tracebox: span model, codecs, store, collector and query API."""

__version__ = "0.1.0"
