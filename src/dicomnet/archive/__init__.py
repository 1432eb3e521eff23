"""The embedded archive: a folder of Part 10 files plus an index (SQLite or PostgreSQL).

Stores what the storage provider receives, answers C-FIND, C-MOVE and C-GET
from its index, and verifies or rebuilds the index against the folder.

May import: :mod:`dicomnet.services` and below.
"""
