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
writes one (a report.md of their own, and now outputs: [report]) is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from iseg.errors import IsegError

__all__ = ["write_project", "output_problem", "is_project", "GENERATED"]

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
    holds something gen-hls did not write (a user's report.md beside a project generated without one):
    regenerating would delete it. None when nothing is in the way, or without a list (an older project: its files
    cannot be told apart)."""
    if before is None:
        return None
    return next((rel for rel in sorted(files) if rel not in before and os.path.lexists(target / rel)), None)


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


def write_project(files: dict[str, str | bytes], target: Path, protect: Iterable[Path] = ()) -> list[str]:
    """Write ``files`` (relative path -> text or bytes) as the folder ``target``, with their list in GENERATED;
    returns the paths of the previous project that were not generated and were kept (moved in).

    Raises IsegError (nothing written, nothing removed) when :func:`output_problem` refuses the
    target or the disk refuses a write. On any failure, an interrupt included, the temporary
    folder is removed and a project moved aside is put back, with everything moved out of it.
    """
    target = Path(target)
    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel == GENERATED:
            raise ValueError(f"refusing to write outside the project: {rel}")
    files = {**files, GENERATED: "".join(f"{rel}\n" for rel in sorted(files))}
    problem = output_problem(target, protect)
    if problem is not None:
        raise IsegError(f"{target}: {problem}")
    before = _generated_before(target) if target.is_dir() else None  # the previous project's GENERATED list
    clash = _user_file_in_the_way(target, files, before)
    if clash is not None:
        raise IsegError(f"{target}: {clash} is not a file gen-hls wrote (the project's {GENERATED} does not list it) "
                        "and the new project writes one there: move it aside, then run again")
    tmp: Path | None = None
    old: Path | None = None
    moved: list[tuple[Path, Path, str]] = []
    made = [p for p in target.parents if not os.path.lexists(p)]  # folders to remove again on failure
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_SUFFIX}", dir=target.parent))
        for rel, content in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", newline="\n")
        os.chmod(tmp, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
            _carry(old, tmp, set(files), before, "", moved)
        os.replace(tmp, target)
        tmp = None
    except BaseException as exc:
        if tmp is not None:  # the swap did not happen: what was moved out of the previous project goes back
            for src, dst, _ in reversed(moved):
                os.replace(dst, src)
        if old is not None and not os.path.lexists(target):
            os.replace(old, target)  # the swap did not happen: the previous project stays
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for p in made:  # deepest first; only the (now empty) folders made here
            try:
                p.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError):
            raise IsegError(f"{target}: cannot write the project: {exc.strerror or exc}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [r for _, _, r in moved]
