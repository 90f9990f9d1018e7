"""The demo's aggregate step: one regional query from the RSO, and one situation report."""

from __future__ import annotations

import subprocess

import click

from rcf.cli.output import console
from rcf.devnet.local_network import Demo, failure_text, rcf_command
from rcf.trust.errors import ConfigError

QUERY = ["--dataset", "irregular_movements", "--by", "nationality", "--from", "2025-01",
         "--to", "2025-12", "--regional", "--deadline", "10s"]  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*rcf_command(), *args], capture_output=True, text=True, check=False, timeout=300
    )


def step_aggregate(demo: Demo) -> None:
    """The RSO asks the region, draws a chart and writes the quarter's situation report."""
    if "RSO" not in demo.ids:
        console.print("(no RSO node in this demo: step skipped)")
        return
    node_dir = str(demo.net.node_layout("RSO").root)
    chart = demo.net.root / "regional-movements-2025.png"
    shown = ["rcf", "query", "aggregate", *QUERY, "--chart", chart.name]
    console.print("$ " + " ".join(shown), markup=False, highlight=False)
    result = _run("query", "aggregate", *QUERY, "--chart", str(chart), "--node-dir", node_dir)
    if result.returncode not in (0, 3):
        raise ConfigError(f"The regional query failed: {failure_text(result)}")
    click.echo(result.stdout.rstrip())
    report = demo.net.root / "situation-2025-Q3.html"
    console.print(f"$ rcf report situation --period 2025-Q3 --out {report.name}", markup=False)
    result = _run("report", "situation", "--period", "2025-Q3", "--out", str(report),
                  "--node-dir", node_dir)  # fmt: skip
    if result.returncode != 0:
        raise ConfigError(f"The situation report failed: {failure_text(result)}")
    click.echo(result.stdout.rstrip())
    demo.outputs += [chart, report]
    console.print(f"chart: {chart}\nreport: {report}", markup=False, highlight=False)
