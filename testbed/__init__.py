"""Real SIP peers on the loopback for tests and `make demo`: Kamailio and sipp.

Owns: starting, faulting and stopping private peers (sync code, subprocesses with timeouts).
Must not know: sipwatch.sip or sipwatch.probes — the rig is the independent side of every
functional test, so it speaks SIP through its own small `rawsip` module.

    start_kamailio(rundir, ...) -> KamailioPeer   registrar + OPTIONS + fault switches
    start_sipp_uas(scenario, rundir, ...) -> SippPeer   "200", "503" (Retry-After) or "silent"
    start_hostile(transport, ...) -> HostilePeer  a UAS whose answers are broken on purpose
    start_sipp_ivr(scenario, rundir, ...) -> SippIvr   sipp as the IVR of one call (-m 1)
    hostile_uas.start_hostile_uas(behaviour)      a callee answering an INVITE wrongly
    free_port(kind) -> int                        a loopback port nothing is bound to
    rawws.start_hostile_ws_peer(behaviour)        a WebSocket server breaking RFC 7118 one way
                                                (rawws.BEHAVIOURS); rawws.send_request: the
                                                rig's own WS/WSS client

    testbed.netns: Netns.create, veth, run_in   namespaces a test makes (and removes) for
                                                addresses beyond the loopback (VIP, IVR)

Safety: loopback only, or addresses inside network namespaces the test made
(`start_kamailio(netns=...)`); each process runs in its own process group and is stopped by
its PID; every wait is bounded. Errors: TestbedError (a RuntimeError), MissingToolError.
"""

from testbed.hostile import HostilePeer, start_hostile
from testbed.kamailio import KamailioPeer, start_kamailio
from testbed.process import MissingToolError, TestbedError, free_port
from testbed.sipp import SippIvr, SippPeer, start_sipp_ivr, start_sipp_uas

__all__ = [
    "HostilePeer",
    "KamailioPeer",
    "MissingToolError",
    "SippIvr",
    "SippPeer",
    "TestbedError",
    "free_port",
    "start_hostile",
    "start_kamailio",
    "start_sipp_ivr",
    "start_sipp_uas",
]
