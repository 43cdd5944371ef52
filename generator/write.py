"""The one module that writes a generated project to disk, atomically.

Files go to a temporary folder next to the target; only when every file is written does the
folder take the target's name (an existing project is moved aside first and deleted after), so
a failure at any point leaves either the old project or nothing -- never half a project.

Replacing is the dangerous step, so it is allowed only for a folder gen-hls itself made (a
``manifest.json`` of format ``iseg-project``) or an empty one, and never for a folder holding
the config or the checkpoint the project is made from: a config with ``output: .`` or a typo
naming a user's folder must not wipe it. :func:`output_problem` is that rule; the config check
runs it before any work, and :func:`write_project` again just before the swap.

Regenerating replaces what gen-hls wrote, nothing else: every project lists its generated files in
``GENERATED`` (``.iseg-generated``), and whatever else the previous project holds (a Vitis ``build/``
folder with hours of synthesis in it, the C-simulation library, a user's notes) is moved into the new
project at the swap (:func:`write_project` returns those paths). A generated file the new project no
longer has (an output dropped from the config) goes with the old project. A user's file where the new project
writes one (a report.md of their own, and now outputs: [report]), or in the way of a folder it writes (a file
named ``src``), is refused before anything is written.

The swap is one ``renameat2(RENAME_EXCHANGE)`` where the file system has it (two renames elsewhere), with SIGINT
and SIGTERM held from the moment the user's files start moving until the old project is deleted, and runs
writing into one folder take turns (an ``flock`` on it), so that neither a signal nor a second gen-hls can leave
the output missing or the user's files in a hidden folder. What only SIGKILL or a power cut can leave, a
``.<name>.tmp-*`` or ``.<name>.old-*`` folder beside the output, is named by the next run (never deleted by it:
it may hold the user's files).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from iseg.errors import IsegError
from iseg.imageio import _umask

__all__ = ["write_project", "output_problem", "is_project", "GENERATED", "InterruptedAfterWrite", "stale_siblings"]

GENERATED = ".iseg-generated"  # the project's own list of the files gen-hls wrote, one relative path per line
_NAME_MAX = 255  # bytes of a file name (ext4, xfs, btrfs, tmpfs)
_TMP_SUFFIX = ".tmp-"  # write_project's temporary sibling .<name>.tmp-XXXXXXXX (the old one's .old- is as long)


def is_project(folder: Path) -> bool:
    """Whether ``folder`` holds a project gen-hls wrote (its ``manifest.json`` says format ``iseg-project``)."""
    from iseg.generator.emit import MANIFEST_FORMAT

    man = folder / "manifest.json"
    try:
        if not man.is_file() or man.is_symlink():
            return False
        data = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT


def output_problem(target: Path, protect: Iterable[Path] = ()) -> str | None:
    """Why ``target`` must not become (or be replaced by) a generated project, or None if it may.

    ``protect``: files that must survive (the config, the checkpoint); a target that is one of
    their folders or ancestors is refused. The reason is worded to follow the target's name.
    """
    target = Path(os.path.abspath(target))
    room = _NAME_MAX - len(f".{_TMP_SUFFIX}XXXXXXXX")  # the temporary sibling's name (mkdtemp: 8 characters)
    if len(os.fsencode(target.name)) > room:
        return (f"is a name of {len(os.fsencode(target.name))} bytes: the project is written beside it first as "
                f".<name>{_TMP_SUFFIX}XXXXXXXX, so at most {room}")
    if target.is_symlink():  # replacing would swap the link, not the folder it names
        return "is a symbolic link (name the folder itself)"
    if os.path.lexists(target) and not target.is_dir():
        return "exists and is not a folder"
    real = Path(os.path.realpath(target))
    for p in protect:
        p_real = Path(os.path.realpath(p))
        if p_real == real or p_real.is_relative_to(real):
            return f"would replace the folder holding {p}"
    # the first part of the path that exists must be a folder we may create entries in
    probe = target
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if probe != target:
        if not probe.is_dir():
            return f"cannot be created: {probe} is not a folder"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"cannot be created: no permission to write in {probe}"
        return None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        return f"cannot be replaced: no permission to write in {target.parent}"
    try:
        empty = not any(target.iterdir())
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not empty and not is_project(target):
        return ("is a folder that is neither empty nor a gen-hls project (no manifest.json of format "
                "iseg-project): refusing to replace it; name a new or empty folder")
    return None


def _generated_before(old: Path) -> set[str] | None:
    """The files a previous project says gen-hls wrote (its GENERATED list), or None without one."""
    try:
        return set((old / GENERATED).read_text(encoding="utf-8").splitlines()) | {GENERATED}
    except (OSError, UnicodeDecodeError):
        return None


def _user_file_in_the_way(target: Path, files: Iterable[str], before: set[str] | None) -> str | None:
    """The first path the new project writes where the previous one (``target``, its GENERATED list ``before``)
    holds something gen-hls did not write (a user's report.md beside a project generated without one), or the
    first folder it writes where that project holds a user's file or link (``src`` in a report-only project
    regenerated with hls): regenerating would delete it. None when nothing is in the way, or without a list (an
    older project: its files cannot be told apart)."""
    if before is None:
        return None
    folders = sorted({str(parent) for rel in files for parent in Path(rel).parents if str(parent) != "."})
    for rel in folders:
        path = target / rel
        if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
            if not any(g == rel or g.startswith(rel + "/") for g in before):
                return rel
    return next((rel for rel in sorted(files) if rel not in before and os.path.lexists(target / rel)), None)


class InterruptedAfterWrite(KeyboardInterrupt):
    """A SIGINT / SIGTERM that arrived while the project was being swapped in: held until the swap was done, so
    the new project is in place (``args[0]``, the target) when it is raised."""


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held for the block, then given to their handlers: the steps that move the user's files
    and swap the projects run to their end (or are undone by an error), never cut between two renames by a
    signal. The handlers are swapped for one that notes the signal (a signal mask would not do: the kernel gives
    a process signal to any thread that does not block it, and Python then runs the handler in the main thread
    at once). Off the main thread no handler can be set, and Python runs none there: nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: got.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if got:  # as it would have been received
            handler = previous[got[0]]
            if callable(handler):
                handler(got[0], None)
            elif handler in (signal.SIG_DFL, None):
                os.kill(os.getpid(), got[0])  # SIGINT's default is Python's own handler, callable: SIGTERM ends


@contextlib.contextmanager
def _turn(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` (the output's parent) for the block: two gen-hls runs writing there
    take turns instead of swapping each other's folders. Where the file system has no flock, no lock."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # the lock goes with the descriptor


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of folders ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the C library or the file system has no such call (the caller then renames twice)."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def stale_siblings(target: Path) -> list[Path]:
    """The ``.<name>.tmp-*`` / ``.<name>.old-*`` folders beside ``target`` that a killed gen-hls left (a run
    holds the turn while it has one, so under the turn every one found is stale)."""
    target = Path(os.path.abspath(target))
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    marks = (f".{target.name}{_TMP_SUFFIX}", f".{target.name}.old-")
    return sorted(target.parent / n for n in names
                  if n.startswith(marks) and len(n) == len(marks[0]) + 8 and (target.parent / n).is_dir())


def _carry(old: Path, new: Path, ours: set[str], mine_before: set[str] | None, rel: str,
           moved: list[tuple[Path, Path, str]]) -> None:
    """Move every entry of the previous project ``old`` that gen-hls did not write into ``new``: a folder that
    holds no generated file moves whole (one rename); a folder that does is walked."""
    for name in sorted(os.listdir(old)):
        r, src, dst = rel + name, old / name, new / name
        if r in ours or (mine_before is not None and r in mine_before):
            continue  # generated: the new project has its own (or no longer has it)
        if src.is_dir() and not src.is_symlink():
            inside = any(g.startswith(r + "/") for g in ours) or (
                mine_before is not None and any(g.startswith(r + "/") for g in mine_before))
            if inside:
                made = not os.path.lexists(dst)  # a generated folder the new project no longer has
                if made:
                    dst.mkdir()
                if dst.is_dir() and not dst.is_symlink():
                    _carry(src, dst, ours, mine_before, r + "/", moved)
                if made and not any(dst.iterdir()):
                    dst.rmdir()  # nothing of the user's was in it
                continue
        if os.path.lexists(dst):
            continue  # cannot happen for a file gen-hls does not write; never overwrite the new project
        os.replace(src, dst)
        moved.append((src, dst, r + ("/" if dst.is_dir() and not dst.is_symlink() else "")))


def write_project(files: dict[str, str | bytes], target: Path, protect: Iterable[Path] = ()
                  ) -> tuple[list[str], list[Path]]:
    """Write ``files`` (relative path -> text or bytes) as the folder ``target``, with their list in GENERATED;
    returns the paths of the previous project that were not generated and were kept (moved in), and the folders
    a killed run left beside the target (``stale_siblings``), for the caller to name.

    Raises IsegError (nothing written, nothing removed) when :func:`output_problem` refuses the
    target or the disk refuses a write. On any failure, an interrupt included, the temporary
    folder is removed and a project moved aside is put back, with everything moved out of it. A signal during
    the swap is held until it is done, then raised as :class:`InterruptedAfterWrite`.
    """
    target = Path(target)
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel == GENERATED:
            raise ValueError(f"refusing to write outside the project: {rel}")
    files = {**files, GENERATED: "".join(f"{rel}\n" for rel in sorted(files))}
    problem = output_problem(target, protect)
    if problem is not None:
        raise IsegError(f"{target}: {problem}")
    made = [p for p in target.parents if not os.path.lexists(p)]  # folders to remove again on failure
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IsegError(f"{target}: cannot write the project: {exc.strerror or exc}") from None
    try:
        with _turn(target.parent):
            return _write_turn(files, target, protect)
    except BaseException:
        for p in made:  # deepest first; only the (now empty) folders made here
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _write_turn(files: dict[str, str | bytes], target: Path, protect: Iterable[Path]
                ) -> tuple[list[str], list[Path]]:
    """write_project's work, holding the turn on the target's folder."""
    problem = output_problem(target, protect)  # again: another run may have written the target meanwhile
    if problem is not None:
        raise IsegError(f"{target}: {problem}")
    stale = stale_siblings(target)
    before = _generated_before(target) if target.is_dir() else None  # the previous project's GENERATED list
    clash = _user_file_in_the_way(target, files, before)
    if clash is not None:
        raise IsegError(f"{target}: {clash} is not a file gen-hls wrote (the project's {GENERATED} does not list it) "
                        "and the new project writes one there: move it aside, then run again")
    tmp: Path | None = None
    old: Path | None = None
    moved: list[tuple[Path, Path, str]] = []
    swapped = False
    with contextlib.ExitStack() as held:
        try:
            with _signals_held():  # no folder made and left unnamed by a signal between mkdtemp and here
                tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_SUFFIX}", dir=target.parent))
            for rel, content in sorted(files.items()):
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8", newline="\n")
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700, as mkdir would have made it
            held.enter_context(_signals_held())  # from here to the old project's deletion: held
            if target.exists():
                _carry(target, tmp, set(files), before, "", moved)
                if _exchange(tmp, target):
                    old, tmp, swapped = tmp, None, True  # tmp's name now holds the previous project
                else:
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                    os.rmdir(old)
                    os.replace(target, old)
            if not swapped:
                os.replace(tmp, target)
                tmp, swapped = None, True
        except BaseException as exc:
            if not swapped:
                if old is not None and not os.path.lexists(target):
                    os.replace(old, target)  # the second rename did not happen: the previous project stays
                for src, dst, _ in reversed(moved):  # what was moved out of the previous project goes back
                    os.replace(dst, src)
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise IsegError(f"{target}: cannot write the project: {exc.strerror or exc}") from None
            raise
        try:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            try:
                held.close()  # a signal held during the swap is delivered here
            except KeyboardInterrupt:
                raise InterruptedAfterWrite(str(target)) from None
    return [r for _, _, r in moved], stale
