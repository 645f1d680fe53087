"""Every MPI message tag mpidml uses, in one table (no two may be equal).

Collectives and algorithms on the same communicator match messages by (source, tag);
a tag shared by two protocols lets one steal the other's message — worst with a
receiver that takes ``ANY_TAG`` (the EASGD centre, the parameter servers' ``polite_recv``).
``tests/test_tags.py`` asserts the values are distinct. Add new tags here, never as a
literal in a module.
"""

from __future__ import annotations

from enum import IntEnum, unique

__all__ = ["Tag"]


@unique            # a duplicate value is an import-time error
class Tag(IntEnum):
    RING_REDUCE_SCATTER = 0x6D01   # comm/ring.py
    RING_ALLGATHER = 0x6D02        # comm/ring.py
    COMPRESSED_RS = 0x6D03         # comm/compressed.py, reduce-scatter of codec payloads
    COMPRESSED_AG = 0x6D04         # comm/compressed.py, allgather of the reduced segments
    RD = 0x6D10                    # comm/rd.py, recursive doubling
    GOSSIP = 0x6D20                # comm/gossip.py, neighbour exchange
    SHIFT = 0x6D21                 # comm/gossip.py, directed one-peer exchange (push-sum)
    BCAST = 0x6D30                 # comm/bcast.py, tree and chain broadcast
    EASGD_MEET = 0x6D40            # algos/easgd_async.py, worker → centre (was 0x6D30: collided with BCAST)
    EASGD_REPLY = 0x6D41           # algos/easgd_async.py, centre → worker
    PS_PUSH = 0x7030               # algos/ps.py, worker → server
    PS_REPLY = 0x7031              # algos/ps.py, server → worker
    PS_BYE = 0x7032                # algos/ps.py, worker leaves a server's epoch
