class InvalidPayload(ValueError):
    """The body cannot be turned into a change event; the sender gets a 400 with this message."""
