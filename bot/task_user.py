"""The user a task's command runs as when the bot's settings name one
(`run_tasks_as`, from the get_settings hook): another user than the bot's,
so that the task can neither read the bot's files (its credentials are mode
0600) nor its processes' memory and environment (`/proc/<pid>/`), nor trace
them.

The bot then runs as root (switching users needs it). The task gets the
directories of its run: w/ (its inputs stay read-only files of the cache,
owned by the bot), io/, and its LUCI_CONTEXT file; the task runner keeps its
run token in its own memory, out of the task's reach. POSIX only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

from bot.errors import TaskError


@dataclasses.dataclass(frozen=True)
class TaskUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def named(cls, name: str) -> TaskUser:
        """The user `name` of this host; TaskError when there is none, when it
        is root, or when this process may not start processes as it."""
        try:
            import pwd
        except ImportError:
            raise TaskError("run_tasks_as: only POSIX hosts can run tasks as another user") from None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise TaskError(f"run_tasks_as: no user {name!r} on this host") from None
        if entry.pw_uid == 0:
            raise TaskError(f"run_tasks_as: {name!r} is root: tasks would hold every privilege of the host")
        if os.geteuid() != 0:
            raise TaskError(f"run_tasks_as: the bot runs as uid {os.geteuid()}, not root: "
                            f"it cannot start tasks as {name!r}")
        return cls(name, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(name, entry.pw_gid)), entry.pw_dir)

    def popen_args(self) -> dict[str, Any]:
        """subprocess.Popen's arguments that start the command as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self) -> dict[str, str]:
        """What a login of this user would set, under the task's own env."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def give(self, paths: Iterable[Path]) -> None:
        """Makes `paths` this user's (not what they hold: files of the cache
        stay the bot's, read-only)."""
        for path in paths:
            try:
                os.chown(path, self.uid, self.gid, follow_symlinks=False)
            except OSError as e:
                raise TaskError(f"run_tasks_as: cannot give {path} to {self.name!r}: {e}") from e

    def give_tree(self, root: Path, skip: Iterable[Path] = ()) -> None:
        """`give`s `root` and every directory under it, but for the trees
        under `skip` (the named caches, whose content is the tasks' already)."""
        skipped = {str(p) for p in skip}
        directories = [root]
        for parent, names, _ in os.walk(root):  # Not into symlinks.
            directories += [Path(parent, n) for n in names]
            names[:] = [n for n in names if os.path.join(parent, n) not in skipped]
        self.give(directories)
