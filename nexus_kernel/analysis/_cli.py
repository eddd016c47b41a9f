"""``nexus evaluate``: run a detector over a NAB-layout corpus and score it with the NAB rules."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["evaluate_command", "analysis_commands"]


@click.command("evaluate")
@click.option("--nab", "root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="NAB root: data/<category>/*.csv and labels/combined_windows.json.")
@click.option("--results", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where NAB-format result files and score tables go.")
@click.option("--detector", default="ensemble", show_default=True, help="A registered detector name.")
@click.option("--params", default="{}", help="Detector parameters as a JSON object.")
def evaluate_command(root: Path, out: Path, detector: str, params: str) -> None:
    """Score DETECTOR on a NAB corpus (profiles standard, low FP, low FN)."""
    from .detectors import detectors
    from .nab import evaluate

    try:
        cls = detectors.get(detector)
        kwargs = json.loads(params)
    except (LookupError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        result = evaluate(root, lambda: cls(**kwargs), detector, out=out)
    except FileNotFoundError as exc:  # no data/<category>/*.csv under the folder
        raise click.BadParameter(f"{exc} (NAB layout: DIR/data/<category>/<file>.csv)", param_hint="--nab") from None
    if result["result"] is None:
        click.echo(f"wrote {result['files']} result files for {detector} to {out / detector}; could not score them: "
                   f"no labels under {root / 'labels'} (NAB's combined_windows.json or combined_labels.json)")
        return
    click.echo(f"{'profile':<20} {'score':>8} {'threshold':>10}")
    for profile, res in result["result"].items():
        click.echo(f"{profile:<20} {res['score']:>8.2f} {res['threshold']:>10.4g}")
    click.echo(f"{result['points']} points at {result['points_per_s']:,.0f} points/s; results in {out}")


analysis_commands: list[click.Command] = [evaluate_command]
