"""Batch-level errors: the whole batch is refused and nothing from it is emitted."""


class BatchError(ValueError):
    """A batch that cannot be read. `code` is the SPEC code (`malformed_json`, `too_deep`, ...)."""

    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.message = message or code
        super().__init__(f"{code}: {self.message}" if message else code)

    def __reduce__(self):
        return (type(self), (self.code, self.message))


class TooLarge(ValueError):
    """A batch whose normalised events pass the output limit given to `decode`. Not a SPEC
    error (the batch may be sound): a bound on the memory one batch may take, since every event
    repeats the batch's header (a batch of 1000 events with a 1 MB `dma` normalises to 1 GB)."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"the batch's normalised events pass {limit} bytes")

    def __reduce__(self):
        return (type(self), (self.limit,))
