"""The `tollmon` command: worker, configuration check and traffic generation."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tollmon.errors import TollmonError
from tollmon.simulate import Surge

app = typer.Typer(
    name="tollmon",
    help="Streaming congestion monitor for expressway toll plazas.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)


@app.command()
def worker() -> None:
    """Run a stream worker (settings from TOLLMON_* environment variables)."""
    from faust import Worker

    from streams.app import create_app
    from tollmon.network import load_network
    from tollmon.settings import Settings

    settings = Settings()
    network = load_network(settings.network_file)
    faust_app = create_app(settings, network)
    Worker(faust_app, loglevel=settings.log_level).execute_from_commandline()


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Network YAML file to validate.")],
) -> None:
    """Validate a network file; print a summary, or every error with its YAML path."""
    from tollmon.network import load_network, summarize

    network = load_network(file)
    Console().print(summarize(network))


@app.command()
def simulate(
    network_file: Annotated[Path, typer.Option("--network")] = Path("config/network.yaml"),
    duration_s: Annotated[float, typer.Option("--duration", help="Event-time seconds.")] = 3600,
    rate: Annotated[float, typer.Option(help="Vehicles per hour per approach.")] = 600,
    plaza: Annotated[list[str] | None, typer.Option(help="Only these plazas.")] = None,
    surge: Annotated[
        list[str] | None,
        typer.Option(help="PLAZA=FACTOR or PLAZA=FACTOR@START-END (seconds from the start)."),
    ] = None,
    seed: int = 0,
    speed: Annotated[float, typer.Option(help="Real time x N; 0 = as fast as possible.")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Write JSONL here instead of Kafka.")] = None,
    bootstrap: Annotated[str, typer.Option(envvar="TOLLMON_KAFKA_BOOTSTRAP")] = "localhost:9092",
    topic_prefix: Annotated[str, typer.Option(envvar="TOLLMON_TOPIC_PREFIX")] = "",
) -> None:
    """Generate realistic traffic for a network, starting now, to Kafka or a file."""
    from tollmon.network import load_network
    from tollmon.publish import publish_events, write_jsonl
    from tollmon.simulate import TrafficProfile, generate

    network = load_network(network_file)
    surges = tuple(_parse_surge(s) for s in surge or [])
    profile = TrafficProfile(vehicles_per_hour=rate, surges=surges)
    events = generate(network, int(time.time() * 1000), duration_s, profile, seed, plaza)
    if out is not None:
        count = write_jsonl(events, out)
        err.print(f"[green]{count} events[/green] written to {out}")
    else:
        count = publish_events(events, bootstrap, topic_prefix, speed)
        err.print(f"[green]{count} events[/green] sent to {bootstrap}")


def _parse_surge(text: str) -> Surge:
    plaza_id, _, rest = text.partition("=")
    factor, _, window = rest.partition("@")
    start, _, end = window.partition("-")
    try:
        return Surge(plaza_id, float(factor), float(start or 0), float(end or "inf"))
    except ValueError:
        raise typer.BadParameter(
            f"expected PLAZA=FACTOR or PLAZA=FACTOR@START-END, got {text!r}"
        ) from None


def main() -> None:
    """Entry point: turn tollmon's own errors into a clear message and exit status 2."""
    try:
        app()
    except TollmonError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
