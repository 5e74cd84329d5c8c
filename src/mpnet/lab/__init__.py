"""Local exchange simulators on 127.0.0.1 for the offline demo (``mpnet lab``) and the tests.

One generic engine (:mod:`mpnet.lab.server`) speaks each profile's protocol; dialects
(:mod:`mpnet.lab.dialects`) give the answers each real exchange's shape; fault modes
(:mod:`mpnet.lab.faults`) reproduce geo-blocks, WAF pages, rate limits, slowness, refused
upgrades, silent feeds, broken JSON, dropped connections and clock skew.
"""

from mpnet.lab.faults import FAULT_MODES, Fault, parse_fault
from mpnet.lab.lab import Lab

__all__ = ["FAULT_MODES", "Fault", "Lab", "parse_fault"]
