"""`swarming archive` and `swarming download`: trees in the content-addressed store."""

import json
from pathlib import Path
from typing import Any

import click

from client import transfers
from client.api import ApiError, Client
from client.tasks_cli import fail, server_options
from shared.cas import Digest
from shared.cas_transfer import Archived


@click.command()
@server_options
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print {digest, size_bytes, files, uploaded, bytes_uploaded} instead of the digest.")
def archive(client: Client, directory: Path, as_json: bool) -> None:
    """Upload a directory tree and print its digest, HASH/SIZE.

    Only the files the store lacks are uploaded. 'trigger --cas-digest' and 'download' take the digest."""
    try:
        archived = transfers.archive(client, directory)
    except ApiError as e:
        fail(e)
    click.echo(json.dumps(_summary(archived), indent=2) if as_json else str(archived.digest))


def _summary(archived: Archived) -> dict[str, Any]:
    return {
        "digest": archived.digest.to_wire(),
        "size_bytes": archived.tree.size_bytes,
        "files": len(archived.tree.files),
        "uploaded": archived.stats.items_moved,
        "bytes_uploaded": archived.stats.bytes_moved,
    }


@click.command()
@server_options
@click.argument("digest", type=transfers.DigestType())
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def download(client: Client, digest: Digest, out: Path) -> None:
    """Download the tree DIGEST (HASH/SIZE) into the directory OUT.

    Files keep their executable bit; symlinks and empty directories come back too."""
    try:
        transfers.download(client, digest, out)
    except ApiError as e:
        fail(e)
