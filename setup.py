"""Build script for the optional compiled 1-bit kernels (``bidrn.deploy._bitkernels``).

All package metadata lives in pyproject.toml; this file only declares the C++ extension. The
extension uses plain C++17 and the CPython C API (no torch or numpy headers), so building it
needs nothing but a compiler: pip's isolated build environment never has to fetch torch.
Instruction sets are selected at run time (per-function ``target`` attributes plus a CPUID
check), so one build runs on any x86-64 CPU; no ``-march=native``.

If the extension cannot be built (no compiler), installation still succeeds and
``bidrn.deploy`` falls back to its pure-torch reference path with a one-line warning.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = Path("src/bidrn/deploy/csrc")
SOURCES = [
    "module.cpp",
    "thread_pool.cpp",
    "common.cpp",
    "kernels_generic.cpp",
    "kernels_popcnt.cpp",
    "kernels_avx2.cpp",
    "kernels_avx512.cpp",
    "kernels_neon.cpp",
]
HEADERS = [
    "bitconv.hpp",
    "epilogue.hpp",
    "pack.hpp",
    "kernels_scalar.hpp",
    "simd_scalar.hpp",
    "simd_avx2.hpp",
    "simd_avx512.hpp",
    "simd_neon.hpp",
    "thread_pool.hpp",
    "tiles.hpp",
]


class OptionalBuildExt(build_ext):
    """Build the kernels if possible; otherwise warn and install the pure-Python package."""

    def build_extension(self, ext: Extension) -> None:
        """Compile with flags suited to the compiler; report failures instead of aborting."""
        if self.compiler.compiler_type == "msvc":
            ext.extra_compile_args = ["/O2", "/std:c++17"]
        else:
            ext.extra_compile_args = ["-O3", "-std=c++17", "-fvisibility=hidden"]
            ext.extra_link_args = ["-pthread"]
        try:
            super().build_extension(ext)
        except Exception as error:  # any compiler or linker failure: the package still works
            print(
                f"warning: bidrn's compiled 1-bit kernels were not built ({error}); "
                "bidrn.deploy will use the slower pure-torch reference path",
                file=sys.stderr,
            )

    def run(self) -> None:
        """Tolerate a missing compiler (raised before build_extension is reached)."""
        try:
            super().run()
        except Exception as error:
            print(f"warning: bidrn's compiled 1-bit kernels were not built ({error})", file=sys.stderr)


setup(
    ext_modules=[
        Extension(
            "bidrn.deploy._bitkernels",
            sources=[str(CSRC / name) for name in SOURCES],
            depends=[str(CSRC / name) for name in HEADERS],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
