"""Events to standard output, as JSON Lines: for pipes and for a look at what comes in."""

import sys

from ..log import unblanked
from . import Sink


class StdoutSink(Sink):
    async def write(self, records) -> None:
        out = sys.stdout.buffer
        for r in records:
            if r.kind in self.kinds:
                out.write(unblanked(r.payload))
        out.flush()
