"""The `tollmon` command: worker, configuration check and traffic generation."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tollmon.errors import TollmonError
from tollmon.eventfiles import InputFormat, RawLine
from tollmon.grafana import dashboards_app
from tollmon.kafka_security import KafkaSecurity
from tollmon.network import Network
from tollmon.simulate import DetectorFault, Surge

app = typer.Typer(
    name="tollmon",
    help="Streaming congestion monitor for expressway toll plazas.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(dashboards_app, name="dashboards")
err = Console(stderr=True)


@app.command()
def worker() -> None:
    """Run a stream worker (settings from TOLLMON_* environment variables)."""
    from streams.app import create_agent_topics, create_app, make_worker
    from tollmon import native
    from tollmon.network import load_network
    from tollmon.settings import Settings

    typer.echo(f"tollmon worker: detectors {native.status()}", err=True)
    settings = Settings()
    network = load_network(settings.network_file)
    create_agent_topics(settings)
    faust_app = create_app(settings, network)
    make_worker(faust_app, settings.log_level).execute_from_commandline()


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
    detector_fault: Annotated[
        list[str] | None,
        typer.Option(
            help="PLAZA=MISSED,DOUBLE: the plaza's approach detectors miss that share of the"
            " vehicles and count that share twice (e.g. URC-W03=0,0.03)."
        ),
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
    faults = tuple(_parse_detector_fault(f) for f in detector_fault or [])
    profile = TrafficProfile(vehicles_per_hour=rate, surges=surges, detector_faults=faults)
    events = generate(network, int(time.time() * 1000), duration_s, profile, seed, plaza)
    if out is not None:
        count = write_jsonl(events, out)
        err.print(f"[green]{count} events[/green] written to {out}")
    else:
        count = publish_events(events, bootstrap, topic_prefix, speed, _kafka_security())
        err.print(f"[green]{count} events[/green] sent to {bootstrap}")


@app.command()
def backtest(
    files: Annotated[list[Path], typer.Argument(help="Event files: JSONL[.gz], CSV, Parquet.")],
    network_file: Annotated[Path, typer.Option("--network")] = Path("config/network.yaml"),
    out: Annotated[Path, typer.Option(help="Directory for the outputs and report.html.")] = Path(
        "backtest"
    ),
    input_format: Annotated[
        str, typer.Option("--format", help="events, or lane-records (national export).")
    ] = "events",
) -> None:
    """Run the detectors in-process over event files; write outputs and an HTML report."""
    from tollmon.backtest import run_backtest, write_outputs
    from tollmon.network import load_network
    from tollmon.report import render_report
    from tollmon.weighing_flow import network_thresholds

    network = load_network(network_file)
    lines = _read_input(files, _input_format(input_format), network)
    result = run_backtest(network, lines)
    write_outputs(result, out)
    tolerance = network_thresholds(network).scale_drift_tolerance_ratio
    title = f"tollmon backtest: {', '.join(f.name for f in files)}"
    report = render_report(result, title, tolerance)
    (out / "report.html").write_text(report, encoding="utf-8")
    err.print(
        f"[green]{sum(result.events_by_type.values())} events[/green], "
        f"{len(result.invalid)} invalid, {len(result.estimates)} estimates, "
        f"{len(result.alerts)} alert updates -> {out}/"
    )


@app.command()
def record(
    topics: Annotated[list[str], typer.Option("--topics", help="Topics to dump (repeatable).")],
    start: Annotated[str, typer.Option("--from", help="ISO time or epoch ms.")],
    end: Annotated[str, typer.Option("--to", help="ISO time or epoch ms.")],
    out: Annotated[Path, typer.Option(help="FILE.jsonl, FILE.jsonl.gz or FILE.parquet.")],
    bootstrap: Annotated[str, typer.Option(envvar="TOLLMON_KAFKA_BOOTSTRAP")] = "localhost:9092",
) -> None:
    """Dump the messages of topics written in a time range to a file."""
    from tollmon.record import parse_time, record_topics

    count = record_topics(
        bootstrap, topics, parse_time(start), parse_time(end), out, _kafka_security()
    )
    err.print(f"[green]{count} messages[/green] written to {out}")


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="Recorded event files.")],
    prefix: Annotated[str, typer.Option(help="Topic prefix, e.g. replay1.")] = "",
    speed: Annotated[float, typer.Option(help="Event time x N.")] = 1.0,
    fast: Annotated[bool, typer.Option("--fast", help="As fast as possible.")] = False,
    network_file: Annotated[Path, typer.Option("--network")] = Path("config/network.yaml"),
    input_format: Annotated[
        str, typer.Option("--format", help="events, or lane-records (national export).")
    ] = "events",
    bootstrap: Annotated[str, typer.Option(envvar="TOLLMON_KAFKA_BOOTSTRAP")] = "localhost:9092",
) -> None:
    """Produce recorded events into a topic prefix, keyed by plaza, original event times."""
    from tollmon.network import load_network
    from tollmon.replay import load_messages, replay_messages

    fmt = _input_format(input_format)
    network = load_network(network_file) if fmt == "lane-records" else None
    messages = load_messages(_read_input(files, fmt, network))
    stats = replay_messages(
        messages,
        bootstrap,
        prefix,
        None if fast else speed,
        progress=True,
        security=_kafka_security(),
    )
    err.print(
        f"[green]{stats.sent} events[/green] sent in {stats.seconds:.1f} s "
        f"({stats.rate:,.0f}/s); {stats.skipped} lines without a known type skipped"
    )


def _kafka_security() -> KafkaSecurity:
    """TOLLMON_KAFKA_* security settings, read here at the entry point like the worker's."""
    return KafkaSecurity()


def _read_input(files: list[Path], fmt: InputFormat, network: Network | None) -> Iterator[RawLine]:
    from tollmon.lanerecords import plate_hasher_from_env
    from tollmon.replay import read_input

    # The plate key is read here, at the entry point, and only when plates are present.
    hasher = plate_hasher_from_env(os.environ) if fmt == "lane-records" else None
    return read_input(files, fmt, network, hasher)


def _input_format(text: str) -> InputFormat:
    if text == "events":
        return "events"
    if text == "lane-records":
        return "lane-records"
    raise typer.BadParameter(f"--format must be events or lane-records, got {text!r}")


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


def _parse_detector_fault(text: str) -> DetectorFault:
    plaza_id, _, ratios = text.partition("=")
    missed, _, double = ratios.partition(",")
    try:
        fault = DetectorFault(plaza_id, float(missed), float(double or 0))
    except ValueError:
        fault = None
    shares = (fault.missed_ratio, fault.double_ratio) if fault is not None else (-1.0,)
    if fault is None or not plaza_id or min(shares) < 0 or sum(shares) > 1:
        raise typer.BadParameter(
            f"expected PLAZA=MISSED,DOUBLE, shares from 0 adding up to at most 1, got {text!r}"
        )
    return fault


def main() -> None:
    """Entry point: turn tollmon's own errors into a clear message and exit status 2."""
    try:
        app()
    except TollmonError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
