"""Archives and downloads for the commands: the bot's signed-URL transport
(bot/cas_transport.py), a byte progress bar on stderr when it is a terminal,
and failures as one-line errors."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from bot.cas_transport import SignedUrlTransport, StorageError
from client.api import Client
from client.exit_status import ExitStatus
from shared import cas_transfer
from shared.cas import Digest, Tree
from shared.errors import ValidationError

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

T = TypeVar("T")
Move = Callable[[cas_transfer.Service, cas_transfer.Transport, cas_transfer.Progress], T]
MIB = 1024 * 1024


class TransferError(click.ClickException):
    """A transfer failed (exit 1) or was interrupted (130); shown the way the
    other commands show errors."""

    def __init__(self, message: str, exit_code: int = ExitStatus.ERROR):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class DigestType(click.ParamType):
    """A tree's digest, HASH/SIZE, as `archive` prints it."""

    name = "HASH/SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Digest:
        if isinstance(value, Digest):
            return value
        try:
            return Digest.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def archive(client: Client, root: Path) -> cas_transfer.Archived:
    """Uploads the tree under `root`: only the blobs the store lacks, then its manifest."""
    return _transfer(f"uploading {root}", client,
                     lambda service, transport, progress: cas_transfer.archive(service, transport, root, progress))


def download(client: Client, digest: Digest, dest: Path, label: str = "downloading") -> Tree:
    """Writes the tree `digest` names under `dest`."""

    def move(service: cas_transfer.Service, transport: cas_transfer.Transport,
             progress: cas_transfer.Progress) -> Tree:
        try:
            return cas_transfer.download_tree(service, transport, digest, dest, progress)[0]
        except cas_transfer.MissingBlobs as e:
            if e.digests == [digest]:  # The manifest itself.
                raise TransferError(f"no tree {digest} in the store") from e
            raise

    return _transfer(label, client, move)


def _transfer(label: str, client: Client, move: Move[T]) -> T:
    stderr = click.get_text_stream("stderr")
    try:
        with click.progressbar(length=0, label=label, file=stderr, hidden=not stderr.isatty()) as bar, \
                SignedUrlTransport() as transport:
            bar.item_show_func = lambda _: f"{bar.pos / MIB:.1f}/{bar.length / MIB:.1f} MiB"
            result = move(_Metered(client, bar), transport, bar.update)
            # Complete, even when nothing was to move, or when some bytes were
            # not reported (the manifest a download reads first).
            bar.pos = bar.length
            bar.finish()
            bar.render_progress()
            return result
    # StorageError: Cloud Storage's answers and lost connections; OSError: the
    # local disk's. The API's own failures (ApiError) are the commands' to show.
    except (cas_transfer.MissingBlobs, cas_transfer.CorruptBlob, ValidationError, StorageError, OSError) as e:
        raise TransferError(str(e)) from e
    except KeyboardInterrupt:
        raise TransferError("interrupted", ExitStatus.INTERRUPTED) from None


class _Metered:
    """The API, growing the bar by the bytes each `cas_urls` call is about to
    move: the total is known only then (the blobs the store lacks, or the
    blobs a manifest lists). The transfer calls it from one thread."""

    def __init__(self, client: Client, bar: "ProgressBar[int]"):
        self._client = client
        self._bar = bar

    def call(self, function: str, body: dict[str, Any]) -> dict[str, Any]:
        if function == "cas_urls":
            self._bar.length += sum(d["size_bytes"] for digests in body.values() for d in digests)
        return self._client.call(function, body)
