"""The public contract (architecture 3), checked by the shared contract script against this build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACT = REPO.parent / "shared" / "contract" / "check_contract.py"


def test_public_contract_holds(tmp_path: Path) -> None:
    if not CONTRACT.is_file():
        pytest.skip("../shared/contract/check_contract.py is not present beside the repository")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, str(CONTRACT)], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "contract holds" in proc.stdout
    assert "FAILS" not in proc.stdout
