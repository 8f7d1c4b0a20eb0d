#!/usr/bin/env bash
# One-shot check of condnn's GPU backend on a machine with a GPU, nvcc and the CUDA toolkit
# but no network and no PyCUDA.
#
#   benchmarks/gpu_check.sh PATH/TO/pycuda-VERSION.tar.gz [OUT_DIR]
#
# 1. builds PyCUDA in place from that source distribution (without cuRAND, which condnn does
#    not use), compiling its C++ sources in parallel; PyCUDA's pure-Python dependencies
#    (pytools, platformdirs) come from wheels beside the sdist when python3 lacks them;
# 2. builds condnn's compiled CPU kernels in place in this checkout, fetching nothing;
#    PyCUDA, those wheels and the checkout are put on PYTHONPATH, and nothing is installed
#    into python3's environment;
# 3. runs the GPU tests: tests/gpu/test_gpu_{sparse,import,checks,training_ops,models,
#    training}.py;
# 3b. times training on the CPU and the GPU: benchmarks/training_speed.py;
# 4. runs the GPU benchmark, benchmarks/sparse_dot_gpu.py (GPU_CHECK_BENCH_ARGS: extra
#    arguments, e.g. --quick), its tables written to OUT_DIR after every point.
#
# OUT_DIR defaults to $OUT if set, else benchmarks/results; everything printed also goes to
# OUT_DIR/gpu_check.log.  The whole run stays within GPU_CHECK_SECONDS (default 470): each
# step has a time limit and the benchmark gets what is left.  Exit status: that of the tests
# (the build steps' on an earlier failure).
set -uo pipefail

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 PYCUDA_SDIST [OUT_DIR]" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
sdist="$(readlink -f "$1")"
deps="$(dirname "$sdist")"
out="${2:-${OUT:-$root/benchmarks/results}}"
mkdir -p "$out"
out="$(readlink -f "$out")"
budget="${GPU_CHECK_SECONDS:-470}"
export PYTHONUNBUFFERED=1
exec > >(tee "$out/gpu_check.log") 2>&1
cd "$root"

left() { echo $(( budget - SECONDS )); }
step() { echo; echo "== $* (${SECONDS}s elapsed, $(left)s left)"; }
fail() { echo "gpu_check: $*" >&2; exit 1; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  || echo "(nvidia-smi not available)"
nvcc="$(command -v nvcc || true)"
[ -n "$nvcc" ] || nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
[ -x "$nvcc" ] || fail "nvcc not found on PATH or in CUDA_HOME"
cuda_root="${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$nvcc")")")}"
export PATH="$(dirname "$nvcc"):$PATH"
"$nvcc" --version | tail -n 2
python3 --version

step "PyCUDA's dependencies"
work="$(mktemp -d)"
site="$work/site"
mkdir -p "$site"
for module in pytools platformdirs; do
  if ! python3 -c "import $module" 2>/dev/null; then
    wheel="$(ls "$deps"/"$module"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || fail "python3 has no $module and no wheel of it is in $deps"
    python3 -m pip install --quiet --no-index --no-deps --target "$site" "$wheel" \
      || fail "installing $wheel failed"
    echo "$module: from $(basename "$wheel")"
  fi
done

step "PyCUDA from $(basename "$sdist")"
build="$work"
# PyCUDA links against libcuda: the toolkit's stub, else the driver's own library.
drvlib=""
for d in "$cuda_root/lib64/stubs" "$cuda_root/targets/x86_64-linux/lib/stubs" \
         "$cuda_root/lib/stubs"; do
  if [ -e "$d/libcuda.so" ]; then drvlib="$d"; break; fi
done
if [ -z "$drvlib" ]; then
  real="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')"
  for f in "$real" /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1; do
    if [ -n "$f" ] && [ -e "$f" ]; then
      mkdir -p "$build/libcuda"
      ln -sf "$f" "$build/libcuda/libcuda.so"
      drvlib="$build/libcuda"
      break
    fi
  done
fi
[ -n "$drvlib" ] || fail "no libcuda to link PyCUDA against"
echo "CUDA toolkit: $cuda_root; libcuda for linking: $drvlib"
tar -xzf "$sdist" -C "$build" || fail "cannot unpack $sdist"
src="$(find "$build" -maxdepth 1 -type d -name 'pycuda-*' | head -n 1)"
# setup.py compiles one source at a time; this runs it with one compiler job per core.
cat > "$build/parallel_setup.py" <<'PY'
import concurrent.futures
import os
import runpy
import sys

import setuptools  # noqa: F401  (puts setuptools' distutils in place first)
from setuptools._distutils import ccompiler


def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None,
                      debug=0, extra_preargs=None, extra_postargs=None, depends=None):
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def one(obj):
        if obj in build:
            source, ext = build[obj]
            self._compile(obj, source, ext, cc_args, extra_postargs, pp_opts)

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, objects))
    return objects


ccompiler.CCompiler.compile = _parallel_compile
sys.path.insert(0, os.getcwd())
sys.argv = ["setup.py"] + sys.argv[1:]
runpy.run_path("setup.py", run_name="__main__")
PY
(
  cd "$src" &&
  python3 configure.py --cuda-root="$cuda_root" --no-cuda-enable-curand \
    --cudadrv-lib-dir="$drvlib" >/dev/null &&
  timeout 300 python3 "$build/parallel_setup.py" build_ext --inplace \
    >"$build/pycuda-build.log" 2>&1
) || { tail -n 40 "$build/pycuda-build.log"; fail "building PyCUDA failed"; }
export PYTHONPATH="$src:$site:$root${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY' || fail "PyCUDA does not work here"
import pycuda.driver as drv
drv.init()
dev = drv.Device(0)
print("PyCUDA", ".".join(map(str, drv.get_version())), "| driver", drv.get_driver_version(),
      "|", dev.name(), "sm_%d%d" % dev.compute_capability())
PY

step "condnn"
timeout 300 python3 setup.py build_ext --inplace >"$build/condnn-build.log" 2>&1 \
  || { tail -n 40 "$build/condnn-build.log"; fail "building condnn's CPU kernels failed"; }
python3 -c "import condnn.gpu as g; print('condnn.gpu available:', g.available(), g.unavailable_reason() or '')"

step "GPU tests"
t=$(( $(left) - 150 ))
[ "$t" -gt 300 ] && t=300
[ "$t" -lt 60 ] && t=60
timeout "$t" python3 -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/gpu/test_gpu_sparse.py tests/gpu/test_gpu_import.py tests/gpu/test_gpu_checks.py \
  tests/gpu/test_gpu_training_ops.py tests/gpu/test_gpu_models.py tests/gpu/test_gpu_training.py \
  2>&1 | tee "$out/gpu_tests.log"
tests_status=${PIPESTATUS[0]}
echo "gpu_check: tests exit status $tests_status"

step "training speed"
t=$(( $(left) - 150 ))
if [ "$t" -gt 30 ]; then
  [ "$t" -gt 120 ] && t=120
  timeout "$t" python3 benchmarks/training_speed.py --steps 20 --out-dir "$out"
  echo "gpu_check: training speed exit status $?"
else
  echo "gpu_check: no time left for the training speed"
fi

step "GPU benchmark"
t=$(( $(left) - 10 ))
if [ "$t" -gt 30 ]; then
  # shellcheck disable=SC2086
  timeout "$t" python3 benchmarks/sparse_dot_gpu.py --out-dir "$out" ${GPU_CHECK_BENCH_ARGS:-}
  bench_status=$?
  [ "$bench_status" -eq 124 ] && echo "gpu_check: the benchmark reached the time limit; its tables hold the points it finished"
else
  echo "gpu_check: no time left for the benchmark"
  bench_status=124
fi

step "done"
echo "tests: exit status $tests_status; benchmark: exit status $bench_status"
echo "results in $out: gpu_check.log gpu_tests.log training_speed.csv/.md and the benchmark's sparse_dot_gpu*.csv/.md"
exit "$tests_status"
