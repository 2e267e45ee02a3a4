"""The ``fieldlink`` command (SPEC section 3). Exit codes: 0 ok, 1 runtime failure, 2 bad
configuration or usage. Only this module decides to exit; libraries raise."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.config import config_warnings, effective_config, load_config, render_toml
from gateway.errors import ConfigError, FieldlinkError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SIMULATORS = ["nmea-gps", "aprs-radio"]
"""Firmware stubs ``fieldlink simulate`` runs: module ``firmware_stubs.<name>`` with ``main``."""

log = logging.getLogger("fieldlink")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def setup_logging(level: str) -> None:
    # Under systemd the journal stamps each line itself.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fieldlink", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"fieldlink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the gateway daemon (what systemd runs)")
    run.add_argument("-c", "--config", type=Path, default=Path("config.toml"))
    run.add_argument("--log-level", default=None, help="overrides gateway.log_level")

    check = sub.add_parser("check-config", help="validate and print the effective config")
    check.add_argument("-c", "--config", type=Path, default=Path("config.toml"))
    check.add_argument("--format", choices=["toml", "json"], default="toml")

    demo = sub.add_parser("demo", help="everything on one machine, no hardware")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    demo.add_argument("--log-level", default="error")
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="auto: mosquitto when installed, else the embedded broker from the demo extra",
    )

    sla = sub.add_parser("sla", help="the latency report from the journal")
    sla.add_argument("-c", "--config", type=Path, default=Path("config.toml"))
    sla.add_argument("--since", default=None, help="24h, 7d, 30m or an RFC 3339 time")
    sla.add_argument("--format", choices=["table", "json", "html"], default="table")
    sla.add_argument("-o", "--output", type=Path, default=None)

    dispatch = sub.add_parser("dispatch", help="publish a task and follow it")
    dispatch.add_argument("-c", "--config", type=Path, default=Path("config.toml"))
    dispatch.add_argument("--unit", required=True)
    dispatch.add_argument("--priority", choices=["urgent", "normal", "routine"], default="normal")
    dispatch.add_argument("--voice", action="store_true", help="speak it where the radio can")
    dispatch.add_argument("--at", default=None, metavar="LAT,LON", help="the incident's place")
    dispatch.add_argument("--radius-m", type=float, default=100.0)
    dispatch.add_argument(
        "--until",
        choices=["acknowledged", "contacted", "on_scene", "closed"],
        default="acknowledged",
        help="follow until every unit reached this stage (or a later one)",
    )
    dispatch.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to follow it (default: the stage's SLA target from [sla] plus 30)",
    )
    dispatch.add_argument("text")

    simulate = sub.add_parser("simulate", help="run one firmware stub against a real link")
    simulate.add_argument("device", choices=SIMULATORS)
    simulate.add_argument("args", nargs=argparse.REMAINDER, help="the stub's own options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "check-config": lambda: _check_config(args.config, args.format),
        "run": lambda: _run(args.config, args.log_level),
        "demo": lambda: _demo(args.duration, args.log_level, args.broker),
        "simulate": lambda: _simulate(args.device, args.args),
        "sla": lambda: _sla(args.config, args.since, args.format, args.output),
        "dispatch": lambda: _dispatch(args),
    }
    try:
        return commands[args.command]()
    except ConfigError as exc:
        print(f"fieldlink: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except FieldlinkError as exc:
        print(f"fieldlink: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _demo(duration_s: float, log_level: str, broker: str) -> int:
    from gateway.devkit.demo import run_demo  # noqa: PLC0415 - only the demo needs the stubs

    setup_logging(log_level)
    return asyncio.run(run_demo(duration_s=duration_s, broker=broker))


def _check_config(path: Path, fmt: str) -> int:
    config = load_config(path)
    for warning in config_warnings(config):
        print(f"fieldlink: warning: {warning}", file=sys.stderr)
    effective = effective_config(config)
    if fmt == "json":
        print(json.dumps(effective, ensure_ascii=False, indent=2))
    else:
        print(render_toml(effective), end="")
    return EXIT_OK


def _run(path: Path, log_level: str | None) -> int:
    config = load_config(path)
    setup_logging(log_level or config.gateway.log_level)
    for warning in config_warnings(config):
        log.warning("%s", warning)
    from gateway.daemon import Gateway  # noqa: PLC0415 - keep check-config light

    async def serve() -> None:
        gateway = Gateway(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, gateway.stop)
        await gateway.run()

    asyncio.run(serve())
    return EXIT_OK


def _simulate(device: str, argv: list[str]) -> int:
    import importlib  # noqa: PLC0415 - each stub is loaded only when asked for

    module = importlib.import_module(f"firmware_stubs.{device.replace('-', '_')}")
    result = module.main(argv)
    return int(result)


def _sla(path: Path, since: str | None, fmt: str, output: Path | None) -> int:
    from gateway.sla import run_sla  # noqa: PLC0415

    return run_sla(load_config(path), since=since, fmt=fmt, output=output)


def _dispatch(args: argparse.Namespace) -> int:
    from gateway import dispatch_cli  # noqa: PLC0415

    config = load_config(args.config)
    try:
        at = dispatch_cli.parse_at(args.at) if args.at else None
    except ValueError as exc:
        print(f"fieldlink: {exc}", file=sys.stderr)
        return EXIT_USAGE
    task = dispatch_cli.build_task(
        args.unit,
        args.text,
        priority=args.priority,
        voice=args.voice,
        at=at,
        radius_m=args.radius_m,
    )
    if args.timeout is not None and not args.timeout > 0:
        print("fieldlink: --timeout must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    timeout = (
        args.timeout
        if args.timeout is not None
        else dispatch_cli.default_timeout_s(config, args.until)
    )
    return asyncio.run(dispatch_cli.follow_task(config, task, timeout, until=args.until))


if __name__ == "__main__":
    sys.exit(main())
