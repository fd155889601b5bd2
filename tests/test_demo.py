"""`robustft demo`: offline, simulated experts, and the commands it suggests run as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from robustft.cli import main


def test_demo_runs_offline_and_its_suggested_commands_run_as_printed(tmp_path, capsys):
    out = tmp_path / "my runs" / "it's a demo"  # a path a shell would split or choke on, unquoted
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "SIMULATED" in printed and "denoised.jsonl" in printed and "--base-url" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"] == 80 and summary["failed"] == 0

    commands = {m[1]: m[0] for m in re.findall(r"(robustft (trace|report|export) .*?)\s{3}\(", printed)}
    assert set(commands) == {"trace", "report", "export"}
    shell = f"robustft() {{ {shlex.quote(sys.executable)} -m robustft \"$@\"; }}\n"
    for name, command in commands.items():
        proc = subprocess.run(["bash", "-c", shell + command], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, (command, proc.stderr)
        if name == "trace":
            sample_id = shlex.split(command)[-1]
            assert sample_id in proc.stdout and "checker" in proc.stdout.lower()
    assert (out / "report.html").is_file()
    exported = (out / "export" / "demo.csv").read_text().splitlines()
    assert exported[0] == "id,question,answer,options" and len(exported) == 1 + summary["clean"] + summary["relabeled"] + summary["confirmed"]

    # The demo restarts cleanly in its own directory, and refuses to delete anyone else's.
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    assert main(["demo", "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    assert (tmp_path / "mine" / "thesis.txt").exists()
