"""The distributions a user installs: `python -m build` makes an sdist with the sources (Cython,
protos, license) and, from it, a wheel that installs and runs in a new virtual environment."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTOR = os.path.join(ROOT, "tests", "vectors", "seed_example_all_actions.json")

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-m", "build", "--version"], capture_output=True).returncode,
    reason="the build package is not installed (pip install -e '.[test]')",
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), ROOT],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_sdist_holds_the_sources(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "native/_native.pyx", "proto/collector/v1/batch.proto",
                   "proto/collector/v1/collector.proto", "collector/py.typed", "setup.py",
                   "pyproject.toml", "constraints.txt", "examples/collector.toml"):
        assert needed in names, needed
    native = pathlib.Path(ROOT, "native")  # every source the extensions are built from
    for path in [*native.glob("*.pyx"), *native.glob("*.pxi"), *native.glob("*.h"), native / "parts.py"]:
        if path.name != "parts.pxi":  # which the build writes from parts.py
            assert f"native/{path.name}" in names, path.name
    assert "native/parts.pxi" not in names
    for stub in pathlib.Path(ROOT, "collector").glob("*.pyi"):
        assert f"collector/{stub.name}" in names, stub.name
    assert not any(n.endswith("_pb2.py") or (n.startswith("native/") and n.endswith(".c")) for n in names)


def test_wheel_says_what_it_needs(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        names = z.namelist()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    core = [r for r in requires if "extra ==" not in r]
    # the generated modules refuse an older runtime or another major version: say so
    protobuf = next(r for r in core if r.startswith("protobuf"))
    assert ">=" in protobuf and "<" in protobuf
    assert not any(r.startswith(("grpcio-tools", "nats-py", "clickhouse-connect")) for r in core)
    assert "License-Expression: Apache-2.0" in meta and "Classifier: Typing :: Typed" in meta
    assert "collector/py.typed" in names
    for module in ("_native", "_crc_native", "_idset_native"):  # each built, with its stub
        assert any(n.startswith(f"collector/{module}.") and n.endswith(".so") for n in names), module
        assert f"collector/{module}.pyi" in names, module


def test_wheel_installs_and_runs_in_a_new_venv(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    done = subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    version = subprocess.run([str(venv / "bin" / "collector"), "--version"], capture_output=True,
                             text=True, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split() == ["collector", "0.1.0", "(native", "decoder)"]
    with open(VECTOR) as f:
        vector = json.load(f)
    decoded = subprocess.run(
        [str(venv / "bin" / "collector"), "decode", "--received-at", str(vector["received_time"])],
        input=vector["batch"].encode() + b"\n", capture_output=True, cwd=tmp_path)
    assert decoded.returncode == 0, decoded.stderr
    assert [json.loads(line) for line in decoded.stdout.splitlines()] == vector["events"]
