"""Service providers a listener plugs in: storage, discard, commitment, MPPS, worklist.

Each provider answers one family of requests; storage providers follow the
C-STORE provider contract of :mod:`dicomnet.net.provider`.

May import: :mod:`dicomnet.net` and below.
"""
