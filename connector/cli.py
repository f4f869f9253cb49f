"""`connector` command line. Each sub-command lives with the code it drives; this only routes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

USAGE = """usage: connector <command> [options]

commands:
  run           run the agent (configured by CONNECTOR_* environment variables)
  demo          sandbox AWS + control plane + agent in one process: sync, grant, revoke
  controlplane  the reference control plane: serve, dispatch, jobs, inventory
  sandbox       the embedded AWS sandbox (moto + extensions): serve
  doctor        preflight checks where the connector runs (control plane, AWS roles, regions, EKS, guardrails)
  bench         benchmarks: sync, dispatch, grant, memory (needs the 'bench' extra)
  version       print the version

`connector <command> --help` for a command's options.
"""


def _run(argv: Sequence[str]) -> int:
    from connector.agent.main import main

    return main(argv)


def _demo(argv: Sequence[str]) -> int:
    from connector.demo import main

    return main(argv)


def _controlplane(argv: Sequence[str]) -> int:
    from connector.controlplane.cli import main

    return main(argv)


def _sandbox(argv: Sequence[str]) -> int:
    try:
        from connector.sandbox.cli import main
    except ImportError as exc:
        print(
            f"the sandbox needs the 'sandbox' extra: pip install 'access-connector[sandbox]' ({exc})", file=sys.stderr
        )
        return 2
    return main(argv)


def _doctor(argv: Sequence[str]) -> int:
    from connector.doctor import main

    return main(argv)


def _bench(argv: Sequence[str]) -> int:
    from connector.bench.cli import main

    return main(argv)


def _version(argv: Sequence[str]) -> int:
    from connector import __version__

    print(__version__)
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": _run,
    "demo": _demo,
    "controlplane": _controlplane,
    "sandbox": _sandbox,
    "doctor": _doctor,
    "bench": _bench,
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
