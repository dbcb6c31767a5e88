"""What this install is: its release and which decoder runs, as `collector --version`, the start
log line and the `collector_build_info` metric all say it."""

from importlib.metadata import PackageNotFoundError, version

from .decode import DECODER


def release() -> str:
    """This install's release (`unknown` in a source tree that was never installed)."""
    try:
        return version("event-collector")
    except PackageNotFoundError:
        return "unknown"


def version_line() -> str:
    """`collector 0.1.0 (native decoder)`."""
    return f"collector {release()} ({DECODER} decoder)"
