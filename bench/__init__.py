"""skconcepts benchmarks: ratios against sklearn, overcomplete and naive baselines.

Run ``python -m bench --quick`` (under 5 minutes on 2 cores) or ``--full``; the
table is printed and written to ``docs/benchmarks.md``.
"""
