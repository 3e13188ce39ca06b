"""The layer rule, held by a test: no module imports from a layer above its own (``scripts/import_graph.py``).

The walker is checked too, on a small package written for the purpose, so that a rule that could never fail
does not pass for a rule that holds.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


@pytest.fixture(scope="module")
def graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_no_module_imports_from_a_layer_above(graph_tool):
    graph = graph_tool.module_graph()
    assert len(graph) > 40  # the walk found the package
    assert graph_tool.violations(graph) == []


def test_every_subpackage_has_a_layer(graph_tool):
    subpackages = {graph_tool.subpackage(m) for m in graph_tool.module_graph()} - {None}
    assert subpackages <= graph_tool.LAYERS.keys()


def test_kernels_import_only_torch_triton_and_errors(graph_tool):
    for path in (graph_tool.ROOT / "kernels").glob("*.py"):
        ours = {m for m in graph_tool.imports_of(path) if not m.startswith("cs336_lm.kernels")}
        assert ours <= {"cs336_lm.errors", "cs336_lm"}, path.name


def test_the_walker_sees_eager_lazy_and_relative_imports(graph_tool, tmp_path):
    root = tmp_path / "cs336_lm"
    for folder in ("nn", "kernels", "cli"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "nn" / "layers.py").write_text("from cs336_lm import errors\nfrom . import helpers\n")
    (root / "nn" / "helpers.py").write_text("")
    (root / "kernels" / "fast.py").write_text("def f():\n    from cs336_lm.nn import layers\n")
    (root / "cli" / "main.py").write_text("import cs336_lm.kernels.fast\n")
    graph = graph_tool.module_graph(root)
    assert graph["cs336_lm.nn.layers"] == {"cs336_lm", "cs336_lm.errors", "cs336_lm.nn", "cs336_lm.nn.helpers"}
    assert graph_tool.violations(graph) == [
        "cs336_lm.kernels.fast (layer 1) imports cs336_lm.nn (layer 2)",
        "cs336_lm.kernels.fast (layer 1) imports cs336_lm.nn.layers (layer 2)",
    ]
