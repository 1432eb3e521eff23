"""Datasets at rest: Part 10 files, the attributes an archive indexes, C-FIND matching.

Reads what a storage SCP needs from a dataset's first bytes without a full
parse, and holds the pydicom glue used where a Dataset is the API (queries,
identifiers, N-service attribute lists).

May import: :mod:`dicomnet.core` and :mod:`dicomnet.errors`.
"""
