"""Build steps that need code: protobuf modules from proto/, and the native decoder from native/.

If the native extension cannot be built, the install still succeeds with the pure-Python
decoder, and says so.
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos() -> None:
    """Generate collector/v1/*_pb2.py (and gRPC stubs) from proto/ into the source tree."""
    from grpc_tools import protoc

    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    protos = sorted(glob.glob(os.path.join(HERE, "proto", "collector", "v1", "*.proto")))
    args = [
        "grpc_tools.protoc",
        f"-I{os.path.join(HERE, 'proto')}",
        f"-I{include}",
        f"--python_out={HERE}",
        f"--grpc_python_out={HERE}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(protos))


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
    ext = Extension(
        "collector._native",
        ["native/_native.pyx"],
        extra_compile_args=["-O3"],
        libraries=["z"],  # the log's checksums (zlib's crc32, as Python's zlib module has it)
    )
    return cythonize([ext], language_level=3, compiler_directives={"binding": False})


setup(cmdclass={"build_py": BuildPy, "build_ext": OptionalBuildExt}, ext_modules=extensions())
