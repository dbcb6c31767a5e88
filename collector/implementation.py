"""Which implementation runs: the compiled modules unless they are missing or
COLLECTOR_NO_NATIVE=1 is set, their pure twins otherwise. `decode`, `log` and `pipeline` take
their modules from here, so all three make the same choice.

Each compiled module has a pure twin with the same public names (a test checks it):
`_native`/`_pure` (the decoder), `_crc_native`/`_crc_pure` (the log's checksums),
`_idset_native`/`_idset_pure` (dedup's set of ids).
"""

import importlib
import os
import warnings

from . import _crc_pure, _idset_pure, _pure

TWINS = {"_native": "_pure", "_crc_native": "_crc_pure", "_idset_native": "_idset_pure"}

NATIVE = False
WHY_PURE = "COLLECTOR_NO_NATIVE is set"
decoder, crc, idset = _pure, _crc_pure, _idset_pure
if not os.environ.get("COLLECTOR_NO_NATIVE"):
    try:
        _modules = [importlib.import_module(f"{__package__}.{name}") for name in TWINS]
    except ImportError as exc:  # not built: the pure twins do the same work, slower
        # Python says "circular import" when the module is simply absent from this copy of
        # the package, as it is in a source tree that was never built and shadows the install.
        WHY_PURE = (f"the native decoder is not built in {os.path.dirname(__file__)} (in a "
                    "source tree, build it with `pip install -e .`)" if "_native" in str(exc)
                    else f"the native decoder does not load: {exc}")
        warnings.warn(f"collector: {WHY_PURE}; using the pure-Python decoder", stacklevel=2)
    else:
        decoder, crc, idset = _modules
        NATIVE = True
        WHY_PURE = ""
DECODER = "native" if NATIVE else "pure"  # what `collector --version` and the metrics say

__all__ = ["NATIVE", "WHY_PURE", "DECODER", "TWINS", "decoder", "crc", "idset"]
