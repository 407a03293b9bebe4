"""Schemathesis, all checks and stateful links, against a live server: zero failures.

KEYRACK_ST_MAX_EXAMPLES (default 15) sets the examples per operation; the long run uses 500.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.reliability.servers import Node, Tenant

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = os.environ.get("KEYRACK_ST_MAX_EXAMPLES", "15")


def run_schemathesis(
    node: Node, tenant: Tenant, report_dir: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **node.server.env,  # type: ignore[union-attr]
        "KEYRACK_ST_ORG_ID": tenant.org_id,
        "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(CONFIG),
        "run", f"{node.url}/openapi.json",
        "--checks", "all",
        "--max-examples", MAX_EXAMPLES,
        "--workers", "1",
        "--report", "junit", "--report-dir", str(report_dir),
    ]  # fmt: skip
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_schemathesis_finds_nothing(node: Node, tenant: Tenant, tmp_path: Path) -> None:
    result = run_schemathesis(node, tenant, tmp_path / "schemathesis-report")
    summary = result.stdout[result.stdout.find("SUMMARY") :]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "passed" in summary and "failed" not in summary
    assert "Authentication failed" not in result.stdout  # every case really was authenticated
    assert "0 covered" not in result.stdout  # the create -> delete link was exercised
    print("FIGURE schemathesis:", " ".join(summary.split())[:400])
