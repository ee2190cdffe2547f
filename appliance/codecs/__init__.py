"""Wire formats. Each module turns request bytes into normalised span dicts (``appliance.model``).

Decoders raise ``DecodeError`` (or its subclass ``SpanError``) with a message fit for a 400 answer;
they never raise anything else on bad input.
"""

from tracebox.appliance.model import DecodeError, SpanError

__all__ = ["DecodeError", "SpanError"]
