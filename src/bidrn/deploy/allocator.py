"""glibc allocator settings for repeated inference: freed activations stay mapped for the next call.

glibc serves large blocks with ``mmap`` (above a threshold that adapts up to 32 MiB) and gives the
top of its heap back to the system once more than twice that threshold lies free there. A frozen
paper-size model allocates tens of MiB of activations per call, so whenever something else in the
process frees a lot (another model, a large image) the next calls map and zero-fill their
activations again: 4 600 to 8 000 page faults (18-32 MiB) per call, measured with Hand4Whole run
eagerly in the same process (``benchmarks/runtimes.py``); 0 with these settings.

:func:`retain_freed_memory` fixes both thresholds (which also stops glibc adapting them): blocks up
to 32 MiB come from the heap and freed memory is kept up to 512 MiB, so peak RSS is unchanged but
not returned between calls. It changes the whole process, so applications call it (``bidrn
predict``, ``demo``, ``bench`` and the benchmarks), not the library on import. Elsewhere than glibc
(musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

#: blocks up to this size come from the heap (glibc's largest allowed mmap threshold on 64-bit)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of the heap kept rather than returned to the system
TRIM_THRESHOLD = 512 * 2**20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module doc); returns whether glibc took both."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
