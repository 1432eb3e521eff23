"""The protocol core, sans-IO: bytes in, events and bytes out.

Owns the codec switch and its pure twin, the PDU value types, the PS3.8 state
table (``ul``), association negotiation, DIMSE command sets, every status code,
UIDs and SOP classes. Nothing here opens a socket or a file, starts a task or
reads a clock, so every rule of PS3.7 and PS3.8 can be tested without a network.

May import: :mod:`dicomnet.errors` only.
"""
