"""Every compiled module has a pure twin with the same public names, and a stub (.pyi) that
writes the signatures the compiled code (binding=False) does not carry."""

import ast
import importlib
import inspect
import pathlib

import pytest

from collector import implementation

PACKAGE = pathlib.Path(implementation.__file__).parent
NATIVE = pathlib.Path(__file__).parent.parent / "native"


def _own_public(module) -> set[str]:
    """The public functions and classes the module defines itself (not the ones it imports)."""
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or callable(value))
            and getattr(value, "__module__", None) == module.__name__}


def _stub_names(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


@pytest.mark.parametrize("native_name, pure_name", sorted(implementation.TWINS.items()))
def test_twins_expose_the_same_names(native_name, pure_name):
    pure = importlib.import_module(f"collector.{pure_name}")
    stub = PACKAGE / f"{native_name}.pyi"
    assert set(pure.__all__) == _stub_names(stub), "the stub writes the twin API"
    assert all(hasattr(pure, name) for name in pure.__all__)
    try:
        native = importlib.import_module(f"collector.{native_name}")
    except ImportError:
        pytest.skip("the native modules are not built")
    assert set(native.__all__) == set(pure.__all__)
    assert all(hasattr(native, name) for name in native.__all__)
    assert _own_public(native) <= set(native.__all__), "a public name the twin lacks"


def test_the_switch_picks_one_side_for_all():
    modules = [implementation.decoder, implementation.crc, implementation.idset]
    names = [m.__name__.rsplit(".", 1)[1] for m in modules]
    assert names == (list(implementation.TWINS) if implementation.NATIVE
                     else list(implementation.TWINS.values()))


def test_every_native_source_is_a_twin_with_a_stub():
    """Each extension module (native/<module>.pyx) has a pure twin and its stub in the package."""
    sources = sorted(p.stem for p in NATIVE.glob("*.pyx"))
    assert sources == sorted(implementation.TWINS)
    assert all((PACKAGE / f"{name}.pyi").is_file() for name in sources)
