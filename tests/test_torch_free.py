"""The runtime never imports torch (nor export), directly or through any import chain."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from .conftest import ARTIFACTS, ROOT

PROBE = """
import json, sys
from pathlib import Path
import numpy as np
import runtime
ran = []
for folder in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "manifest.json").exists()):
    m = runtime.load(folder)
    if isinstance(m, runtime.Tagger):
        m.tag_batch([["The", "dog"], ["a"]])
    elif isinstance(m, runtime.CharLM):
        m.generate("he", max_chars=5)
    else:
        spec = m.io.data_inputs[0]
        m.run(**{spec.name: np.zeros([2 if isinstance(d, str) else d for d in spec.shape], np.float32)})
    ran.append(folder.name)
print(json.dumps({"ran": ran, "torch": sorted(k for k in sys.modules if k == "torch" or k.startswith("torch.")),
                  "export": sorted(k for k in sys.modules if k == "export" or k.startswith("export."))}))
"""


def test_loading_and_running_every_artifact_imports_no_torch():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(ARTIFACTS)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = sorted(p.name for p in ARTIFACTS.iterdir() if (p / "manifest.json").exists())
    assert result["ran"] == expected and expected, result
    assert result["torch"] == [], f"torch modules imported by the runtime: {result['torch'][:5]}"
    assert result["export"] == [], f"export modules imported by the runtime: {result['export'][:5]}"


def test_runtime_sources_import_only_numpy_onnxruntime_and_the_standard_library():
    """ray, an optional extra, is allowed only in the Ray engine (imported only when --engine ray is asked for)."""
    optional = {"ray_engine.py": {"ray"}}
    for path in (ROOT / "runtime").glob("*.py"):
        allowed = {"numpy", "onnxruntime"} | set(sys.stdlib_module_names) | optional.get(path.name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.name}: imports {roots}"
