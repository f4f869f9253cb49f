"""What the production image carries, without Docker: the builder stage of deploy/ecs/Dockerfile replayed
(its COPY sources, its removal of the tooling modules, `pip wheel`), then the wheel inspected and run.

The image must carry the product only. Three lists must agree: the tooling the Dockerfile removes (read from
the Dockerfile itself, so this follows it), the modules .importlinter forbids the product to import, and
Dockerfile.dockerignore; the product modules in the wheel must be the contract's sources."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import connector
from tests.deploy.deploy_paths import DOCKERFILE, ECS_DIR, REPO

pytestmark = pytest.mark.timeout(120)

CONTRACT = "importlinter:contract:product-no-tooling"
# What the wheel carries besides modules: pyproject.toml's [tool.setuptools.package-data].
PACKAGE_DATA = {".pyi", ".typed", ".json", ".yaml"}
NOT_IN_BUILD = "is not part of this build: the production image carries only the agent"


def _builder_instructions() -> list[str]:
    """The builder stage's instructions, continuation lines joined and comments dropped."""
    stages = re.split(r"^FROM\s", DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert re.match(r"\S+ AS builder\n", stages[1]), "the first stage is the builder"
    lines = [line for line in stages[1].splitlines()[1:] if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.split(r"(?<!\\)\n", "\n".join(lines)) if i.strip()]


def dockerfile_copies() -> list[tuple[str, str]]:
    """(source in the repository, destination under WORKDIR) of the builder's COPY instructions."""
    copies = []
    for instruction in _builder_instructions():
        if instruction.startswith("COPY "):
            args = shlex.split(instruction.removeprefix("COPY "))
            assert len(args) == 2 and not args[0].startswith("--"), f"replay handles `COPY src dst` only: {args}"
            copies.append((args[0], args[1]))
    assert copies, "the builder copies the sources"
    return copies


def dockerfile_tooling() -> list[str]:
    """The paths the builder removes before `pip wheel`: the one list of tooling modules."""
    runs = [i.removeprefix("RUN ").replace("\\\n", " ") for i in _builder_instructions() if i.startswith("RUN ")]
    removals = [
        shlex.split(step)[2:] for run in runs for step in run.split("&&") if shlex.split(step)[:2] == ["rm", "-rf"]
    ]
    assert len(removals) == 1, f"one `rm -rf` list of tooling modules in the builder stage: {removals}"
    assert removals[0] and all(p.startswith("connector/") for p in removals[0]), removals[0]
    return removals[0]


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def contract() -> tuple[list[str], list[str]]:
    """(source modules, forbidden modules) of the product-no-tooling contract."""
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter", encoding="utf-8")
    section = parser[CONTRACT]
    return section["source_modules"].split(), section["forbidden_modules"].split()


@dataclass(frozen=True)
class Build:
    wheel: Path
    names: list[str]  # the wheel's entries
    unpacked: Path
    source: Path  # the builder's /src after the removal


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    root = tmp_path_factory.mktemp("image")
    src = root / "src"
    src.mkdir()
    for source, destination in dockerfile_copies():
        origin, target = REPO / source, src / destination
        if origin.is_dir():
            # Dockerfile.dockerignore keeps bytecode out of the context.
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target / origin.name if destination.endswith("/") else target)
    for path in dockerfile_tooling():  # `rm -rf`
        target = src / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    wheels = root / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(wheels), str(src)],
        capture_output=True, text=True, timeout=90, check=False,
        env=os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (wheel,) = wheels.glob("*.whl")
    unpacked = root / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    return Build(wheel=wheel, names=names, unpacked=unpacked, source=src)


def test_tooling_list_is_the_contract_and_the_dockerignore() -> None:
    tooling = dockerfile_tooling()
    missing = [p for p in tooling if not (REPO / p).exists()]
    assert not missing, f"the Dockerfile removes paths that do not exist (renamed?): {missing}"
    _, forbidden = contract()
    assert sorted(_module(p) for p in tooling) == sorted(m for m in forbidden if m.startswith("connector.")), (
        "the tooling the Dockerfile removes and the connector modules .importlinter forbids differ"
    )
    ignored = (ECS_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert sorted(line for line in ignored if line.startswith("connector/")) == sorted(tooling)


def test_every_top_level_module_is_product_or_tooling() -> None:
    """A new module in connector/ must be classified: a contract source (product) or removed (tooling)."""
    sources, _ = contract()
    entries = {
        f"connector.{p.stem}"
        for p in (REPO / "connector").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    tooling = {_module(p) for p in dockerfile_tooling()}
    assert not set(sources) & tooling
    assert entries == set(sources) | tooling, (
        f"unclassified: {sorted(entries - set(sources) - tooling)}; gone: {sorted(set(sources) - entries)}"
    )


def test_wheel_holds_the_product_and_no_tooling(build: Build) -> None:
    tooling = dockerfile_tooling()
    shipped = [n for n in build.names if any(n == p or n.startswith(p.rstrip("/") + "/") for p in tooling)]
    assert not shipped, f"tooling in the wheel: {shipped}"
    packaged = [n for n in build.names if n.startswith("connector/")]
    # The root package's __init__ holds only __version__; it cannot be a contract source (its descendants
    # include the tooling), so it is left out of the comparison.
    top_level = {f"connector.{n.split('/')[1].removesuffix('.py')}" for n in packaged if n.endswith(".py")}
    sources, _ = contract()
    assert top_level - {"connector.__init__"} == set(sources)
    # Nothing of the product is lost on the way (a package without __init__.py, a data file the
    # package-data patterns miss): the wheel holds the builder's sources, file for file.
    expected = {
        p.relative_to(build.source).as_posix()
        for p in (build.source / "connector").rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.suffix in PACKAGE_DATA)
    }
    assert set(packaged) == expected, f"only in wheel: {set(packaged) - expected}; lost: {expected - set(packaged)}"
    entry_points = next(n for n in build.names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(build.wheel) as archive:
        assert "connector = connector.cli:main" in archive.read(entry_points).decode()


def _product_python(build: Build, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """Python on the unpacked wheel and the dependencies only, as in the image. -S skips the .pth files: the
    editable install's finder would otherwise supply connector.controlplane & co. from the repository.
    -P and a neutral cwd keep the repository off sys.path."""
    path = [str(build.unpacked), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CONNECTOR_"))}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return subprocess.Popen(
        [sys.executable, "-S", "-P", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_the_unpacked_product_runs_and_tooling_commands_say_why_not(build: Build, tmp_path: Path) -> None:
    where = "import connector, importlib.util as u; print(connector.__file__, u.find_spec('connector.controlplane'))"
    commands = {
        "where": ("-c", where),
        "version": ("-m", "connector", "version"),
        "help": ("-m", "connector", "--help"),
        "run --help": ("-m", "connector", "run", "--help"),
        "doctor --help": ("-m", "connector", "doctor", "--help"),
        "controlplane serve": ("-m", "connector", "controlplane", "serve"),
        "sandbox": ("-m", "connector", "sandbox"),
        "bench": ("-m", "connector", "bench"),
        "demo": ("-m", "connector", "demo"),
    }
    # In parallel: each is an interpreter start (the agent's imports take most of a second).
    procs = {name: _product_python(build, *args, cwd=tmp_path) for name, args in commands.items()}
    results = {name: (*proc.communicate(timeout=60), proc.returncode) for name, proc in procs.items()}

    out, err, rc = results.pop("where")
    assert rc == 0, err
    assert out.split() == [str(build.unpacked / "connector" / "__init__.py"), "None"], out
    assert results["version"][::2] == (f"{connector.__version__}\n", 0), results["version"]
    for name in ("help", "run --help", "doctor --help"):
        out, err, rc = results[name]
        assert rc == 0 and out.startswith("usage:"), f"{name}: exit {rc}\n{err[-2000:]}"
    for name in ("controlplane serve", "sandbox", "bench", "demo"):
        out, err, rc = results[name]
        command = name.split()[0]
        assert rc == 2 and err.startswith(f"connector {command} {NOT_IN_BUILD}"), f"{name}: exit {rc}\n{err[-2000:]}"
        assert "install the project from source" in err and len(err.strip().splitlines()) == 1, err
