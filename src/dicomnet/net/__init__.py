"""The asyncio library: transport, TLS, associations, client, listener, retrieve.

Turns the sans-IO core into running associations: the buffered transport,
the request queue with its operations window and timers, the client
(``connect``), the listener with its bind rules and caps, the store client,
and the C-MOVE/C-GET sub-operation machinery.

May import: :mod:`dicomnet.core`, :mod:`dicomnet.dataset`, :mod:`dicomnet.errors`.
"""
