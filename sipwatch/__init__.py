"""sipwatch: a SIP-aware health probe and failover trigger for HA SIP PBX clusters.

Importing the package must stay cheap: `sipwatch probe` is a one-shot command whose wall time
is compared against `sipsak -s`, so nothing heavy is imported here.
"""

__version__ = "0.1.0"
