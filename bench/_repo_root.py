"""Imported by each bench script before anything of the repo's: puts the repo root on sys.path.

The scripts run as `python bench/NAME.py`, so sys.path[0] is bench/, and the test rig they
start their peers with (`testbed`, the repo's top-level package) is not in the wheel: only the
editable install's .pth would find it. This makes the scripts work from the checkout whatever
the install (the sipwatch they measure is then the checkout's too).
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
