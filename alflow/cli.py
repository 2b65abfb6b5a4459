"""The ``alflow`` command: parses arguments and delegates; no logic of its own.

Examples
--------
.. code-block:: console

    $ alflow run workflows/quickstart-emt.yaml
    $ alflow status --json
    $ alflow submit workflows/al-gpaw.yaml --store mongodb://user:pw@host/alflow
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from alflow.config import load_campaign
from alflow.errors import AlflowError
from alflow.report.status import campaign_status, format_status
from alflow.settings import load_settings
from alflow.store import mask_uri, open_reader, open_store
from alflow.workflow.launchpad import open_launchpad

# Imported inside functions: alflow.workflow.runner and .submit (when their command
# runs) pull in fireworks, the subcommand modules (in build_parser) scipy and torch's
# owner alflow.committee; ``import alflow.cli`` stays free of them.

__all__ = ["main"]

log = logging.getLogger("alflow")


def _configure_logging(verbose: int) -> None:
    """alflow's log lines on stderr; FireWorks' own chatter only from warnings up."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    alflow_logger = logging.getLogger("alflow")
    alflow_logger.handlers[:] = [handler]
    alflow_logger.setLevel(level)
    alflow_logger.propagate = False
    # FireWorks resets its loggers' levels and adds stdout handlers on every
    # launch; a logger-level filter survives both and keeps its chatter out.
    fireworks_level = logging.DEBUG if verbose > 2 else logging.WARNING
    for name in ("launchpad", "rocket.launcher"):
        fw_logger = logging.getLogger(name)
        fw_logger.filters[:] = []
        fw_logger.addFilter(lambda record, level=fireworks_level: record.levelno >= level)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def _settings(args: argparse.Namespace) -> Any:
    return load_settings(overrides={"store": getattr(args, "store", None)})


def _cmd_run(args: argparse.Namespace) -> int:
    from alflow.workflow.runner import FireworkDone, run_campaign

    config = load_campaign(args.campaign)
    settings = _settings(args)
    started = time.perf_counter()

    def progress(done: FireworkDone) -> None:
        elapsed = time.perf_counter() - started
        log.info(
            "[%s] iteration %s %-10s %3d/%-3d %-9s %6.1f s  %s",
            _clock(elapsed),
            done.iteration,
            done.step,
            done.step_done,
            done.step_total,
            done.state,
            done.seconds,
            done.name,
        )

    log.info("campaign '%s': store %s", config.name, mask_uri(settings.store))
    outcome = run_campaign(config, settings, retry_fizzled=args.retry_fizzled, progress=progress)
    log.info("campaign '%s' ended (%s): %s", config.name, outcome.status, outcome.reason)
    return 0 if outcome.status in ("converged", "stopped") else 1


def _cmd_submit(args: argparse.Namespace) -> int:
    from alflow.workflow.submit import prepare_campaign, submit_campaign

    config = load_campaign(args.campaign)
    settings = _settings(args)
    prepare_campaign(config)
    connection, store = open_store(settings.store, db_name=settings.store_name, settings=settings)
    launchpad = open_launchpad(connection, settings.launchpad_name)
    added = submit_campaign(config, store, launchpad)
    print(
        f"campaign '{config.name}': "
        + ("iteration 0 added to the LaunchPad" if added else "already on the LaunchPad")
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    store = open_reader(settings=_settings(args))
    names = [args.campaign] if args.campaign else store.campaign_names()
    reports = [campaign_status(store, name) for name in names]
    if args.json:
        print(json.dumps(reports if not args.campaign else reports[0], indent=2, default=str))
    else:
        print("\n\n".join(format_status(r) for r in reports) or "no campaigns in this store")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``alflow`` command."""
    parser = argparse.ArgumentParser(
        prog="alflow", description="Active learning of MACE potentials with DFT on FireWorks."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    store_help = (
        "store: a directory served by the local server (default alflow-store) or a "
        "mongodb:// URI; env ALFLOW_STORE"
    )

    run = sub.add_parser(
        "run", help="run (or resume) a campaign to its end with local FireWorks workers"
    )
    run.add_argument("campaign", help="campaign YAML file")
    run.add_argument("--store", help=store_help)
    run.add_argument("--retry-fizzled", action="store_true", help="re-run FIZZLED Fireworks first")
    run.set_defaults(func=_cmd_run)

    submit = sub.add_parser("submit", help="add a campaign's first iteration to a LaunchPad")
    submit.add_argument("campaign", help="campaign YAML file")
    submit.add_argument("--store", help=store_help)
    submit.set_defaults(func=_cmd_submit)

    status = sub.add_parser("status", help="per-iteration figures of campaigns")
    status.add_argument("--campaign", help="one campaign (default: all)")
    status.add_argument("--store", help=store_help)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_cmd_status)

    from alflow.cluster.commands import register as register_cluster
    from alflow.monitor.commands import register as register_monitor
    from alflow.potential.commands import register as register_model
    from alflow.query.commands import register as register_query
    from alflow.store.commands import register as register_server
    from alflow.validation.commands import register as register_validation

    register_query(sub)
    register_monitor(sub)
    register_cluster(sub)
    register_server(sub)
    register_model(sub)
    register_validation(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alflow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM exits through Python: workers stop and a local server is released
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _configure_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args))
    except AlflowError as exc:
        print(f"alflow: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head, less, ...
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("alflow: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
