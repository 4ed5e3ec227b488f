"""Regenerate the Python code for protos/ (``make protos``).

The generated modules sit beside their .proto files so that the Python
package ``v2mom.v1`` mirrors the proto package. They are not tracked;
``tests/contracts/test_protos.py`` fails when they are older than the .proto files.
"""

import os
import sys
from pathlib import Path

import google.type
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"


def googleapis_include() -> str:
    # googleapis-common-protos ships google/type/*.proto beside its modules.
    return str(Path(google.type.__path__[0]).parents[1])


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("v2mom/v1/*.proto"))


def generate(out_dir: Path = PROTO_ROOT) -> None:
    grpc_include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{googleapis_include()}",
        f"-I{grpc_include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for generated in out_dir.glob("v2mom/v1/*_pb2*.py*"):
        os.utime(generated)


if __name__ == "__main__":
    generate()
    print(f"generated Python code for {len(proto_files())} proto files")
