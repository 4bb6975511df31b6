"""A release: the source of every Cloud Function, built once, deployed as one
archive by Terraform (`infra/terraform`, `var.source_dir`).

    python -m local.release --out build/function-source \\
        --server-url https://REGION-PROJECT.cloudfunctions.net --server-version v42

The directory holds what a Python Cloud Function loads from its source root,
and nothing else: `main.py` (the entry points, `functions/main.py`) with
`requirements.txt` beside it (`functions/requirements.txt`, pinned), the
`functions` and `shared` packages, and the bot zip of this release
(`bot_code/swarming_bot.zip`, its digest in `bot_code/VERSION`), built here
once so that every function serves the same version (`SWARMING_BOT_ZIP`).
The zip names the URL bots call, so a release is built for one base URL.
"""

import argparse
import hashlib
import shutil
from pathlib import Path

from functions import bot_code
from shared.bot_archive import digest

REPO = Path(__file__).resolve().parents[1]
#: The packages a function imports, and the files of theirs it reads.
PACKAGES = {"functions": (".py", ".json", ".html", ".js", ".css"), "shared": (".py",)}
BOT_ZIP = "bot_code/swarming_bot.zip"
BOT_VERSION = "bot_code/VERSION"


def build(out: Path, server_url: str, server_version: str) -> str:
    """Writes the release into `out` (emptied first); returns the bot zip's version."""
    if out.exists():
        shutil.rmtree(out)
    for name, data in files(server_url, server_version).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return (out / BOT_VERSION).read_text().strip()


def files(server_url: str, server_version: str) -> dict[str, bytes]:
    """The release's files by relative name."""
    out = {"main.py": (REPO / "functions" / "main.py").read_bytes(),
           "requirements.txt": (REPO / "functions" / "requirements.txt").read_bytes()}
    for package, suffixes in PACKAGES.items():
        for path in sorted((REPO / package).rglob("*")):
            if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts:
                out[path.relative_to(REPO).as_posix()] = path.read_bytes()
    entries = bot_code.Sources().entries(server_url.rstrip("/"), server_version)
    out[BOT_ZIP] = bot_code.write_zip(entries)
    out[BOT_VERSION] = (digest(entries) + "\n").encode()
    return out


def archive(source: Path) -> bytes:
    """The zip Terraform's `archive_file` uploads: every file under `source`,
    the same bytes for the same files."""
    entries = {p.relative_to(source).as_posix(): p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()}
    return bot_code.write_zip(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "function-source",
                        help="the directory to write (emptied first; default: build/function-source)")
    parser.add_argument("--server-url", required=True,
                        help="the base URL the functions are reached at, which the bot zip names")
    parser.add_argument("--server-version", default="dev", help="the version bots and users are shown")
    parser.add_argument("--archive", type=Path, help="also write the source archive (a zip) here")
    args = parser.parse_args(argv)
    version = build(args.out, args.server_url, args.server_version)
    print(f"release in {args.out}: bot version {version}")
    if args.archive:
        data = archive(args.out)
        args.archive.parent.mkdir(parents=True, exist_ok=True)
        args.archive.write_bytes(data)
        print(f"archive {args.archive}: sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
