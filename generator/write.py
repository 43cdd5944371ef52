"""The one module that writes a generated project to disk, atomically.

Files go to a temporary folder next to the target; only when every file is written does the
folder take the target's name (an existing project is moved aside first and deleted after), so
a failure at any point leaves either the old project or nothing -- never half a project.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["write_project"]


def write_project(files: dict[str, str | bytes], target: Path) -> Path:
    """Write ``files`` (relative path -> text or bytes) as the folder ``target``; returns it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for rel, content in sorted(files.items()):
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"refusing to write outside the project: {rel}")
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", newline="\n")
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
