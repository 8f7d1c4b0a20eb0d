"""condnn.gpu without PyCUDA: importable, and says clearly why it cannot run.

Each check runs in a fresh interpreter with PyCUDA made unimportable, so it holds on machines
that do have PyCUDA too.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


_BLOCK_PYCUDA = """
import sys
sys.modules["pycuda"] = None        # any import of pycuda now raises ImportError
sys.modules["pycuda.driver"] = None
"""


def test_import_condnn_does_not_import_the_gpu_backend():
    done = _run("""
        import sys
        import condnn
        assert "condnn.gpu" not in sys.modules, "import condnn imported condnn.gpu"
        assert not any(m == "pycuda" or m.startswith("pycuda.") for m in sys.modules)
        import condnn.gpu
        assert not any(m == "pycuda" or m.startswith("pycuda.") for m in sys.modules), \\
            "import condnn.gpu imported PyCUDA"
        print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_pycuda_the_backend_reports_why():
    done = _run(_BLOCK_PYCUDA + """
import numpy as np
import condnn.gpu
assert condnn.gpu.available() is False
reason = condnn.gpu.unavailable_reason()
print(reason)
try:
    condnn.gpu.sparse_dot(np.ones((2, 2), np.float32), None, np.ones((2, 2), np.float32),
                          None, None, 1)
except RuntimeError as e:
    print(e)
else:
    raise SystemExit("sparse_dot ran without PyCUDA")
try:
    condnn.gpu.sparse_dot_backward(None, None, None, None, None, 1)
except RuntimeError as e:
    print(e)
# The CPU product is unaffected.
out = condnn.sparse_dot(np.ones((2, 2), np.float32), None, np.ones((2, 2), np.float32),
                        None, None, 1)
assert (out == 2).all()
""")
    assert done.returncode == 0, done.stderr
    reason, forward_error, backward_error = done.stdout.strip().splitlines()
    assert reason.startswith("PyCUDA is not installed or does not load")
    assert 'pip install "condnn[gpu]"' in reason
    assert forward_error == f"condnn.gpu is not available: {reason}"
    assert backward_error == forward_error
