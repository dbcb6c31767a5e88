"""Batch-level errors: the whole batch is refused and nothing from it is emitted."""


class BatchError(ValueError):
    """A batch that cannot be read. `code` is the SPEC code (`malformed_json`, `too_deep`, ...)."""

    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.message = message or code
        super().__init__(f"{code}: {self.message}" if message else code)

    def __reduce__(self):
        return (type(self), (self.code, self.message))
