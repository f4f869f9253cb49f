"""`connector` command line. Each sub-command lives with the code it drives; this only routes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

USAGE = """usage: connector <command> [options]

commands:
  run           run the agent (configured by CONNECTOR_* environment variables)
  demo          sandbox AWS + control plane + agent in one process: sync, grant, revoke
  controlplane  the reference control plane: serve, dispatch, jobs, connectors, inventory, events, token
  sandbox       the embedded AWS sandbox (moto + extensions): serve [--partition aws-us-gov|aws-cn]
  doctor        preflight checks where the connector runs (control plane, AWS roles, regions, EKS, guardrails)
  bench         benchmarks: sync, dispatch, grant, memory (needs the 'bench' extra)
  version       print the version

demo, controlplane, sandbox and bench are tooling, not product: the production image leaves them out
(install the project from source for them). `connector <command> --help` for a command's options.
"""


def _run(argv: Sequence[str]) -> int:
    from connector.agent.main import main

    return main(argv)


def _doctor(argv: Sequence[str]) -> int:
    from connector.doctor import main

    return main(argv)


def _version(argv: Sequence[str]) -> int:
    from connector import __version__

    print(__version__)
    return 0


def _tooling(command: str, module: str, what: str, extra: str | None) -> Callable[[Sequence[str]], int]:
    """A tooling sub-command, imported by name when it runs: the .importlinter contract forbids the product
    (this module included) to import tooling, and the production image does not carry it."""

    def run(argv: Sequence[str]) -> int:
        try:
            entry = importlib.import_module(module)
        except ImportError as exc:
            # A missing connector module (this one, or tooling it needs) is a build that leaves tooling out.
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("connector."):
                print(
                    f"connector {command} is not part of this build: the production image carries only the agent;"
                    f" install the project from source for {what}",
                    file=sys.stderr,
                )
                return 2
            if extra is None:
                raise
            # The module is there but a dependency of its extra (moto, waitress...) is not installed.
            print(
                f"connector {command} needs the {extra!r} extra: pip install 'access-connector[{extra}]' ({exc})",
                file=sys.stderr,
            )
            return 2
        main: Callable[[Sequence[str]], int] = entry.main
        return main(argv)

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": _run,
    "demo": _tooling("demo", "connector.demo", "the demo", extra="demo"),
    "controlplane": _tooling("controlplane", "connector.controlplane.cli", "the reference control plane", extra=None),
    "sandbox": _tooling("sandbox", "connector.sandbox.cli", "the AWS sandbox", extra="sandbox"),
    "doctor": _doctor,
    "bench": _tooling("bench", "connector.bench.cli", "the benchmarks", extra="bench"),
    "version": _version,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
