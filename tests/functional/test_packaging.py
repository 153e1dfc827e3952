"""What `pip install sipwatch` ships: the wheel built from this checkout holds the product and
none of the test rig (testbed/: the peers, the demo, the HA lab and its PBX agent).

The build runs in a copy of the checkout (setuptools writes build/ and *.egg-info next to the
sources) with pip's build isolation: it fetches setuptools from the package index, like every
install of the project does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what a wheel build never reads; the rest is copied, testbed/ included, so its absence from
# the wheel is the build's doing
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", ".run",
)  # fmt: skip


def _wheel_names(tmp_path: Path) -> list[str]:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_COPIED, symlinks=True)
    out = tmp_path / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out),
         "--disable-pip-version-check"],
        cwd=src, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = out.glob("sipwatch-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_wheel_holds_the_product_and_nothing_of_the_rig(tmp_path: Path) -> None:
    names = _wheel_names(tmp_path)
    print("\n".join(names))  # the listing, for a failure's report
    # the product is there (the listing is a real one)
    for shipped in ("sipwatch/cli.py", "sipwatch/exitcodes.py", "sipwatch/ocf/sipwatch",
                    "sipwatch/py.typed"):  # fmt: skip
        assert shipped in names
    rig = [
        n
        for n in names
        if "testbed" in n
        or "labpbx" in n
        or Path(n).name in ("lab.py", "lab_init.py", "demo.py", "kamailio.cfg")
        or (Path(n).name.startswith("sipp_uas_") and n.endswith(".xml"))
    ]
    assert rig == []
    # top-level entries: the package, its metadata, the shipped catalogs (data files)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sipwatch", "sipwatch-0.1.0.dist-info", "sipwatch-0.1.0.data"}, tops
