"""Audit the locked dependencies for known vulnerabilities (pip-audit, PyPI's advisories).

Fails on any known vulnerability. Packages the advisory service could not be asked about
(it answers only where PyPI's JSON API is reachable) are listed loudly, not failed: a
build network that reaches only a package mirror cannot audit, and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"


def main() -> int:
    run = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--disable-pip",
            "--requirement",
            str(LOCK),
            "--format",
            "json",
            "--progress-spinner",
            "off",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(run.stdout, run.stderr, sep="\n", file=sys.stderr)
        print("audit: pip-audit gave no report", file=sys.stderr)
        return 1
    audited, skipped, vulnerable = [], [], []
    for dependency in report.get("dependencies", []):
        name = f"{dependency['name']}=={dependency.get('version', '?')}"
        if "skip_reason" in dependency:
            skipped.append(name)
            continue
        audited.append(name)
        for vulnerability in dependency.get("vulns", []):
            fixes = ", ".join(vulnerability.get("fix_versions", [])) or "no fix yet"
            vulnerable.append(f"{name}: {vulnerability['id']} (fixed in {fixes})")
    print(f"audit: {len(audited)} locked packages audited, {len(skipped)} could not be")
    if skipped and not audited:
        print(
            "audit: WARNING: the advisory service was unreachable; nothing was audited",
            file=sys.stderr,
        )
    for line in vulnerable:
        print(f"audit: VULNERABLE {line}", file=sys.stderr)
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
