"""Build steps that need code: protobuf modules from proto/, the native decoder from native/,
and the dependencies that depend on them.

If the native extension cannot be built, the install still succeeds with the pure-Python
decoder, and says so. The generated protobuf modules need a protobuf runtime at least as new as
the protoc that generated them (and of the same major version), so that bound is read from the
generated code itself rather than written down by hand.
"""

import glob
import os
import re
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos() -> None:
    """Generate collector/v1/*_pb2.py, their .pyi stubs (for mypy) and the gRPC stubs from proto/
    into the source tree."""
    from grpc_tools import protoc

    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(glob.glob(os.path.join(HERE, "proto", "collector", "v1", "*.proto")))
    args = [
        "grpc_tools.protoc",
        f"-I{os.path.join(HERE, 'proto')}",
        f"-I{include}",
        f"--python_out={HERE}",
        f"--pyi_out={HERE}",
        f"--grpc_python_out={HERE}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(protos))


def generate_parts() -> None:
    """native/parts.pxi: the native writer's order of an event's keys, from collector/spec.py
    (both read by path: the package itself may not import before it is built)."""
    import importlib.util

    def load(name, path):
        found = importlib.util.spec_from_file_location(name, os.path.join(HERE, path))
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module

    spec = load("collector_spec", os.path.join("collector", "spec.py"))
    parts = load("native_parts", os.path.join("native", "parts.py"))
    text = parts.render(spec.EVENT_KEYS)
    path = os.path.join(HERE, "native", "parts.pxi")
    if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
        with open(path, "w", encoding="utf-8") as f:   # unchanged: Cython need not run again
            f.write(text)


def protobuf_requirement() -> str:
    """`protobuf>=X.Y.Z,<X+1`: what the generated modules accept (they check at import)."""
    generate_protos()
    with open(os.path.join(HERE, "collector", "v1", "batch_pb2.py"), encoding="utf-8") as f:
        found = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", f.read(), re.M)
    if found is None:
        raise RuntimeError("the generated protobuf code does not say its runtime version")
    major, minor, patch = map(int, found.groups())
    return f"protobuf>={major}.{minor}.{patch},<{major + 1}"


# What a running collector imports (grpcio-tools only builds: it is not one of them).
DEPENDENCIES = [
    "grpcio>=1.60",
    "grpcio-health-checking>=1.60",
    "grpcio-reflection>=1.60",
    "msgspec>=0.18",
    "prometheus-client>=0.17",
    "aiohttp>=3.9",
    "duckdb>=2.0,<2.1",  # one minor series: a file written by one is read by the next, not back
    "pyarrow>=16",  # the store's inserts (string views) and the Parquet export: typed columns
    "numpy>=1.24",  # where the store's inserts find the lines of the log's records
]


class BuildPy(build_py):
    def run(self):
        generate_protos()
        super().run()


class OptionalBuildExt(build_ext):
    """Build the native decoder if a compiler and Cython are at hand; warn and go on if not."""

    def run(self):
        generate_protos()
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means: pure Python
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)
        else:  # `collector --version` says which decoder an install runs
            print(f"the native decoder was built: {ext.name}", file=sys.stderr)

    @staticmethod
    def _warn(exc):
        msg = f"WARNING: the native decoder was not built ({exc}); the pure-Python decoder is used"
        print("*" * 78, msg, "*" * 78, sep="\n", file=sys.stderr)


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("WARNING: Cython is missing; the native decoder is not built", file=sys.stderr)
        return []
    try:
        generate_parts()
    except ValueError as exc:   # an order of spec.py's keys the native writer cannot write
        print(f"WARNING: the native decoder is not built: {exc}", file=sys.stderr)
        return []
    # The decoder, the log's checksums and dedup's set: each the twin of a pure module.
    exts = [
        Extension("collector._native", ["native/_native.pyx"], include_dirs=["native"],
                  extra_compile_args=["-O3"]),
        Extension("collector._crc_native", ["native/_crc_native.pyx"], include_dirs=["native"],
                  extra_compile_args=["-O3"],
                  libraries=["z"]),  # zlib's crc32 for what the folded one leaves
        Extension("collector._idset_native", ["native/_idset_native.pyx"], include_dirs=["native"],
                  extra_compile_args=["-O3"]),
    ]
    return cythonize(exts, language_level=3, compiler_directives={"binding": False})


setup(
    cmdclass={"build_py": BuildPy, "build_ext": OptionalBuildExt},
    ext_modules=extensions(),
    install_requires=[*DEPENDENCIES, protobuf_requirement()],
)
