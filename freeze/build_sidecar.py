"""Build the frozen sidecar with PyInstaller, named as Tauri's ``externalBin`` expects: ``bridge-<triple>``.

One-folder by default (``<out>/bridge-<triple>/bridge-<triple>`` beside its
``_internal/`` folder: starts fastest, nothing unpacked per start); ``--onefile`` makes one
executable ``<out>/bridge-<triple>`` (``.exe`` on Windows) that unpacks itself to a
temporary directory at every start and runs as two processes (a bootloader and Python).
The package data (``bridge/openrpc.json``) is collected; everything else PyInstaller
finds from the imports.

Run: ``python freeze/build_sidecar.py [--onefile] [--out dist/sidecar] [--triple T]``
(``make sidecar``; ``make sidecar SIDECAR_MODE=onefile``). Prints the executable's path.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def target_triple() -> str:
    """The host's target triple: ``rustc``'s when installed (what Tauri uses), else from the platform.

    Raises:
        SystemExit: an OS or CPU this script has no name for (give ``--triple``).
    """
    rustc = shutil.which("rustc")
    if rustc is not None:
        info = subprocess.run([rustc, "-vV"], capture_output=True, text=True, check=False).stdout
        for line in info.splitlines():
            if line.startswith("host: "):
                return line.removeprefix("host: ").strip()
    arch = ARCHES.get(platform.machine().lower())
    system = {"linux": "unknown-linux-gnu", "darwin": "apple-darwin", "win32": "pc-windows-msvc"}.get(
        sys.platform
    )
    if arch is None or system is None:
        raise SystemExit(f"no target triple known for {platform.machine()} on {sys.platform}: give --triple")
    return f"{arch}-{system}"


def build(out: Path, triple: str, *, onefile: bool, work: Path) -> Path:
    """Run PyInstaller; return the executable's path."""
    name = f"bridge-{triple}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            str(HERE / "entry.py"),
            "--name",
            name,
            "--onefile" if onefile else "--onedir",
            "--collect-data",
            "bridge",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(out),
            "--workpath",
            str(work),
            "--specpath",
            str(work),
        ],
        check=True,
        cwd=ROOT,
    )
    suffix = ".exe" if sys.platform == "win32" else ""
    return out / f"{name}{suffix}" if onefile else out / name / f"{name}{suffix}"


def main() -> None:
    """Parse the flags, build, print the executable's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--onefile", action="store_true", help="one executable (default: one folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "sidecar", help="output directory")
    parser.add_argument("--triple", help="target triple (default: rustc's host, else the platform's)")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work directory"
    )
    args = parser.parse_args()
    executable = build(args.out, args.triple or target_triple(), onefile=args.onefile, work=args.work)
    print(executable)


if __name__ == "__main__":
    main()
