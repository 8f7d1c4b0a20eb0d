"""Build of condnn's compiled kernels.

The CPU kernels are Cython (``condnn/_sparse.pyx``) around small C micro-kernels
(``condnn/_microkernels.h``) written with GCC vector extensions, so they compile on any
architecture the compiler knows.  Two compiler features are used when available:

* OpenMP, for the multi-threaded kernels (``-fopenmp``);
* ``-march=native``, so the micro-kernels use the widest vector unit of the machine that
  builds them.  Set ``CONDNN_PORTABLE=1`` to build for the compiler's default target instead
  (for a wheel meant for other machines).

On x86 the compiler never fuses a multiply and an add on its own (``-ffp-contract=off``):
the micro-kernels fuse them explicitly when the target has FMA, so that a result does not
depend on which loops the compiler chose to fuse.
"""
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _compiler_accepts(compiler_cmd, flags, source):
    """True if the C compiler compiles and links ``source`` with ``flags``."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = list(compiler_cmd) + flags + [src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_OPENMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
_PLAIN_PROBE = "int main(void){return 0;}\n"
_X86 = ("x86_64", "amd64", "i386", "i686")


class BuildExt(build_ext):
    """Adds the OpenMP and native-architecture flags the compiler supports."""

    def build_extensions(self):
        compiler = getattr(self.compiler, "compiler_so", None)
        compile_flags, link_flags = [], []
        if compiler and self.compiler.compiler_type == "unix":
            compiler = compiler[:1]
            # On x86 the micro-kernels fuse their multiply-adds themselves (_microkernels.h).
            contract = "off" if platform.machine().lower() in _X86 else "fast"
            compile_flags += ["-O3", "-fno-math-errno", f"-ffp-contract={contract}"]
            if os.environ.get("CONDNN_PORTABLE", "") not in ("1", "true", "yes"):
                for flag in ("-march=native", "-mcpu=native"):
                    if _compiler_accepts(compiler, [flag], _PLAIN_PROBE):
                        compile_flags.append(flag)
                        break
            if _compiler_accepts(compiler, ["-fopenmp"], _OPENMP_PROBE):
                compile_flags.append("-fopenmp")
                link_flags.append("-fopenmp")
            else:
                print("condnn: the C compiler has no OpenMP; kernels will run on one thread",
                      file=sys.stderr)
        elif self.compiler.compiler_type == "msvc":
            compile_flags += ["/O2", "/openmp"]
        for ext in self.extensions:
            ext.extra_compile_args = compile_flags + list(ext.extra_compile_args or [])
            ext.extra_link_args = link_flags + list(ext.extra_link_args or [])
        super().build_extensions()


extensions = [
    Extension(
        "condnn._sparse",
        ["condnn/_sparse.pyx"],
        include_dirs=[numpy.get_include(), "condnn"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=["condnn/_microkernels.h", "condnn/_microkernels_impl.h",
                 "condnn/_microkernels_rows.h"],
    ),
    Extension(
        "condnn._policy",
        ["condnn/_policy.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "condnn.optim._kernels",
        ["condnn/optim/_kernels.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False,
                             "wraparound": False, "cdivision": True,
                             "initializedcheck": False},
    ),
    cmdclass={"build_ext": BuildExt},
)
