"""Architecture / hyper-parameter search over the paper's KWS sweep space (pb-algorithm §8.1) with Optuna.

    python -m sweep --data-directory D --out-directory O --trials N [...]   (sweep/cli.py)
    train.py --search-trials N [--max-params P]                             (best_args, sweep/studio.py)

Modules: space (what is searched and how it maps to block flags), budget (size bound before training),
study (storage, sampler, retry bookkeeping), prune (stopping trials behind others of their size), worker
(batches of same-architecture trials trained together, the worker loop), report (trials.csv, pareto.png,
frontier.md). The sweep only drives the block's own training code (block.configs.run_config + kws.trainer.fit).
"""

from __future__ import annotations


def best_args(args, data, log):
    """train.py's hook; imported lazily so `import sweep` stays cheap (see sweep/studio.py)."""
    from .studio import best_args as search

    return search(args, data, log)


__all__ = ["best_args"]
