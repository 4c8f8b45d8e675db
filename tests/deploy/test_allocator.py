"""glibc keeps freed activations mapped once an application asks (bidrn.deploy.allocator)."""

import subprocess
import sys

import pytest

# Rounds of eight activations, each round's a little smaller (12 MiB down to 5 MiB), allocated,
# written and freed; prints the page faults after the first round. By default glibc gives the heap
# top back after each round, so every round maps and zero-fills its activations again.
ROUNDS = """
import resource, sys, torch
from bidrn.deploy.allocator import retain_freed_memory
retained = sys.argv[1] == "retain" and retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for size in range(12, 4, -1):
    before = faults()
    tensors = [torch.empty(size * 2**20 // 4).fill_(1.0) for _ in range(8)]
    del tensors
    counts.append(faults() - before)
print(retained, sum(counts[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_retained_memory_is_not_faulted_in_again():
    def run(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
        retained, faults = out.stdout.split()
        return retained, int(faults)

    _, default_faults = run("default")
    retained, retained_faults = run("retain")
    if retained != "True":
        pytest.skip("not glibc")
    assert default_faults > 20_000  # measured 95 000: seven rounds of 40-88 MiB in 4 KiB pages
    assert retained_faults < 100  # measured 0
