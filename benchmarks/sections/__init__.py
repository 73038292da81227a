"""The sections of ``benchmarks/bench.py``, one module each.

Each offers ``reads(sizes)``, the sizes of the seeded S3 objects it reads, and a ``run`` (two in
``parallel_layers``: the ``parallel`` and ``rtt`` sections) that measures, prints its table and
returns its fields of the summary lines. The driver runs them in the order of its ``SECTIONS``.
"""
