"""Run the registered comparisons (all, or those named on the command line); print each one's table and add it to the
history in benchmarks/results/."""

from __future__ import annotations

import sys
import time

from .cell_embeddings import cell_embeddings
from .embedding_cache import embedding_cache
from .embedding_throughput import embedding_throughput
from .gene_pair_probe import gene_pair_probe
from .gene_task_suite import gene_task_suite
from .gene_type_probe import gene_type_probe
from .harness import chosen_precisions, machine_description, markdown_table, write_history
from .int8_paths import int8_paths
from .multilabel_probe import multilabel_probe
from .qwen3_gpu import qwen3_gpu

COMPARISONS = [
    embedding_throughput,
    embedding_cache,
    gene_pair_probe,
    gene_task_suite,
    gene_type_probe,
    multilabel_probe,
    cell_embeddings,
]
ON_REQUEST = [qwen3_gpu, int8_paths]
"""Run only when named: they need hardware `make bench` does not assume (a CUDA GPU), or compare alternatives the
project does not run (int8 variants, each quantized anew: minutes)."""


def main(names: list[str]) -> None:
    known = {comparison.__name__: comparison for comparison in COMPARISONS + ON_REQUEST}
    unknown = sorted(set(names) - set(known))
    if unknown:
        sys.exit(f"Unknown comparison(s) {unknown}; known: {sorted(known)}")
    machine = f"{machine_description()}\n\n{chosen_precisions()}"
    print(machine, flush=True)
    started = time.perf_counter()
    for comparison in [known[name] for name in names] or COMPARISONS:
        print(f"running {comparison.__name__} ...", flush=True)
        rows = comparison()
        path = write_history(comparison.__name__, rows, machine)
        print(f"{markdown_table(rows)}\n\nWritten to {path}", flush=True)
    print(f"Total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
