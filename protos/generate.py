"""Generate connector/v1/*_pb2*.py(i) from protos/ with grpcio-tools and mypy-protobuf.

Run from the repo root:  python protos/generate.py          (writes the generated code)
                         python protos/generate.py --check  (exits 1 if the checked-in code is stale)
The pinned grpcio-tools / mypy-protobuf versions in pyproject's `dev` extra make the output reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = Path("connector") / "v1"


def generate(out_dir: Path) -> list[Path]:
    # protoc finds the mypy-protobuf plugins on PATH: make the ones installed beside this Python visible.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    protos = sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / OUT_PACKAGE).glob("*.proto"))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *map(str, protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out_dir) for p in (out_dir / OUT_PACKAGE).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        target = ROOT / OUT_PACKAGE
        existing = {p.relative_to(ROOT) for p in target.glob("*_pb2*")}
        if opts.check:
            stale = [
                str(p)
                for p in generated
                if not (ROOT / p).exists() or not filecmp.cmp(Path(tmp) / p, ROOT / p, shallow=False)
            ]
            stale += [str(p) for p in existing - set(generated)]
            if stale:
                print("generated protobuf code is stale; run: python protos/generate.py", file=sys.stderr)
                print("\n".join(f"  {p}" for p in stale), file=sys.stderr)
                return 1
            print(f"generated protobuf code is current ({len(generated)} files)")
            return 0
        for stale_file in existing - set(generated):
            (ROOT / stale_file).unlink()
        target.mkdir(parents=True, exist_ok=True)
        for p in generated:
            shutil.copyfile(Path(tmp) / p, ROOT / p)
        print(f"wrote {len(generated)} files to {OUT_PACKAGE}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
