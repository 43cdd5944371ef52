"""gen-hls refuses bad input before any work: one line, exit 1 (130 interrupted), and the disk as it was.

Every test snapshots the folder around the config (names and bytes) and compares it after the
failure: user files kept, no output folder and no temporary folder left, a previous project
untouched.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from iseg.errors import IsegError
from iseg.generator import write as write_mod
from iseg.generator.cli import main
from iseg.generator.config import load_config
from iseg.generator.write import write_project
from iseg.random_model import PRESETS

from .conftest import write_config


def _snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root`` (hidden ones included) -> its bytes (None for a folder, the target of a link)."""
    def state(p: Path) -> bytes | str | None:
        if p.is_symlink():
            return os.readlink(p)
        return None if p.is_dir() else p.read_bytes()

    return {p.relative_to(root).as_posix(): state(p) for p in sorted(root.rglob("*"))}


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], line: str, root: Path, rc: int = 1) -> None:
    """``gen-hls argv`` exits ``rc`` with exactly ``line`` on stderr, nothing on stdout, ``root`` unchanged."""
    before = _snapshot(root)
    assert main(argv) == rc
    out, err = capsys.readouterr()
    assert err == line + "\n"
    assert out == ""
    assert _snapshot(root) == before


def _raw_config(folder: Path, ckpt: Path, extra: str = "", output: str = "out", name: str = "config.yaml") -> Path:
    """A config written as text (for YAML that yaml.safe_dump cannot produce: .nan, repeated keys)."""
    path = folder / name
    path.write_text(f"checkpoint: {ckpt}\noutput: {output}\nproject: iseg_test\nboard: kv260\n{extra}")
    return path


# --------------------------------------------------------------------------------------------
# 1. the output folder: only a previous project or an empty folder is replaced
# --------------------------------------------------------------------------------------------
def test_output_dot_keeps_the_config_folder(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """``output: .`` next to the config used to replace the config's folder (user notes and config lost)."""
    (tmp_path / "models").mkdir()
    ckpt = tmp_path / "models" / "m.safetensors"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("notes\n")
    cfg = _raw_config(work, Path("../models/m.safetensors"), output=".", name="gen.yaml")
    _fails(capsys, [str(cfg)], "gen-hls: error: gen.yaml: output: '.' would replace the folder holding "
           f"{cfg.resolve()}", tmp_path)


def test_output_above_the_config_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    (tmp_path / "sub").mkdir()
    cfg = _raw_config(tmp_path / "sub", tiny_ckpt, output="..")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: output: '..' would replace the folder holding "
           f"{cfg.resolve()}",
           tmp_path)


def test_output_holding_the_checkpoint_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    (tmp_path / "data" / "ckpt").mkdir(parents=True)
    (tmp_path / "data" / "ckpt" / "m.safetensors").write_bytes(tiny_ckpt.read_bytes())
    cfg = _raw_config(tmp_path, Path("data/ckpt/m.safetensors"), output="data")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: output: 'data' would replace the folder holding "
           "the checkpoint", tmp_path)


def test_output_of_user_files_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """A folder of user files that is not a project used to be wiped with exit status 0."""
    (tmp_path / "userdata" / "deep").mkdir(parents=True)
    (tmp_path / "userdata" / "a.txt").write_text("mine\n")
    (tmp_path / "userdata" / "deep" / "b.bin").write_bytes(b"\x00\x01")
    cfg = _raw_config(tmp_path, tiny_ckpt, output="userdata")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: output: 'userdata' is a folder that is neither empty "
           "nor a gen-hls project (no manifest.json of format iseg-project): refusing to replace it; name a new or "
           "empty folder", tmp_path)


@pytest.mark.parametrize("manifest", ['{"format": "something-else"}', "not json", '["iseg-project"]'])
def test_output_with_a_foreign_manifest_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys, manifest: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text(manifest)
    cfg = _raw_config(tmp_path, tiny_ckpt)
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: output: 'out' is a folder that is neither empty nor a "
           "gen-hls project (no manifest.json of format iseg-project): refusing to replace it; name a new or empty "
           "folder", tmp_path)


def test_output_empty_folder_and_previous_project_are_replaced(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    assert main([str(cfg)]) == 0
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert main([str(cfg)]) == 0  # regenerating into the same folder
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "out"]


def test_regenerating_keeps_what_the_user_added(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """Regenerating used to replace the whole folder: a Vitis build/ (hours of synthesis), notes, a source file
    added next to the generated ones were gone. Now only what gen-hls wrote (.iseg-generated) is replaced; the
    rest moves into the new project, and gen-hls says which. A generated file the new config no longer asks for
    (the rtl/ output dropped) goes with the old project; a user's file inside that folder stays."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls", "rtl"])
    assert main([str(cfg)]) == 0
    out = tmp_path / "out"
    listed = (out / ".iseg-generated").read_text().splitlines()
    assert "manifest.json" in listed and "src/top.cpp" in listed and any(p.startswith("rtl/") for p in listed)
    assert listed == sorted(listed) and ".iseg-generated" not in listed
    (out / "build" / "hls_iseg").mkdir(parents=True)
    (out / "build" / "hls_iseg" / "csynth.rpt").write_text("hours of work\n")
    (out / "NOTES.txt").write_text("mine\n")
    (out / "src" / "extra.cpp").write_text("// mine\n")
    (out / "rtl" / "my_wrapper.v").write_text("// mine\n")
    top = (out / "src" / "top.cpp").read_text()
    (out / "src" / "top.cpp").write_text("edited\n")  # a generated file: regenerated
    capsys.readouterr()
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "hls"])
    assert main([str(cfg)]) == 0
    said = capsys.readouterr().out
    assert ("gen-hls: kept what the previous project held besides its generated files: NOTES.txt, build/, "
            "rtl/my_wrapper.v, src/extra.cpp\n") in said
    assert (out / "build" / "hls_iseg" / "csynth.rpt").read_text() == "hours of work\n"
    assert (out / "NOTES.txt").read_text() == (out / "rtl" / "my_wrapper.v").read_text()[3:] == "mine\n"
    assert (out / "src" / "extra.cpp").read_text() == "// mine\n"
    assert (out / "src" / "top.cpp").read_text() == top
    assert sorted(p.name for p in (out / "rtl").iterdir()) == ["my_wrapper.v"]  # the generated RTL is gone
    assert not any(p.startswith("rtl/") for p in (out / ".iseg-generated").read_text().splitlines())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "out"]  # nothing left aside


@pytest.mark.parametrize("mine", ["report.md", "rtl/iseg_add.v"])
def test_regenerating_refuses_to_write_over_a_users_file(tmp_path: Path, tiny_ckpt: Path, capsys, mine: str) -> None:
    """A user's file at a path the new project generates (their report.md beside a project made without one, then
    outputs: [report]) was deleted by a successful run; now the run is refused, nothing written or removed."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["hls"])
    assert main([str(cfg)]) == 0
    out = tmp_path / "out"
    (out / mine).parent.mkdir(exist_ok=True)
    (out / mine).write_text("mine\n")
    capsys.readouterr()
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["hls", "report", "rtl"])
    _fails(capsys, [str(cfg)], f"gen-hls: error: {out}: {mine} is not a file gen-hls wrote (the project's "
           ".iseg-generated does not list it) and the new project writes one there: move it aside, then run again",
           tmp_path)
    assert (out / mine).read_text() == "mine\n"


def test_an_empty_config_path_is_not_the_current_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    """``gen-hls "$CONFIG"`` with CONFIG unset said ".: is a folder"."""
    monkeypatch.chdir(tmp_path)
    _fails(capsys, [""], "gen-hls: error: config: empty path (expected a config.yaml)", tmp_path)


def test_output_name_too_long_for_the_temporary_folder(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """A legal name of 242 to 255 bytes passed the check, then failed after the planning: the project is written
    first as .<name>.tmp-XXXXXXXX beside it, 14 bytes longer. Now refused up front; 241 bytes work."""
    name = "n" * 242
    cfg = _raw_config(tmp_path, tiny_ckpt, output=name)
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: output: {name!r} is a name of 242 bytes: the project "
           "is written beside it first as .<name>.tmp-XXXXXXXX, so at most 241", tmp_path)
    cfg = write_config(tmp_path, tiny_ckpt, output="n" * 241, outputs=["report"])
    assert main([str(cfg)]) == 0 and (tmp_path / ("n" * 241) / "report.md").is_file()


@pytest.mark.parametrize("output", ["afile/o", "afile/x/y", "/dev/null/o"])
def test_output_under_a_file(tmp_path: Path, tiny_ckpt: Path, capsys, output: str) -> None:
    """A path under a regular file used to end in a FileExistsError traceback."""
    (tmp_path / "afile").write_text("")
    cfg = _raw_config(tmp_path, tiny_ckpt, output=output)
    blocker = "/dev/null" if output.startswith("/dev") else str(tmp_path / "afile")
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: output: {output!r} cannot be created: {blocker} is "
           "not a folder", tmp_path)


def test_output_symlink_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """Replacing would swap the link itself (and leave the folder it names); dangling or not, refused."""
    (tmp_path / "lnk").symlink_to("elsewhere")
    cfg = _raw_config(tmp_path, tiny_ckpt, output="lnk")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: output: 'lnk' is a symbolic link (name the folder "
           "itself)", tmp_path)


def test_write_project_refuses_a_user_folder(tmp_path: Path) -> None:
    """The writer checks again at the swap (the folder may have changed since the config was read)."""
    (tmp_path / "userdata").mkdir()
    (tmp_path / "userdata" / "a.txt").write_text("mine\n")
    before = _snapshot(tmp_path)
    with pytest.raises(IsegError) as exc:
        write_project({"x.txt": "x"}, tmp_path / "userdata")
    assert str(exc.value) == (f"{tmp_path / 'userdata'}: is a folder that is neither empty nor a gen-hls project "
                              "(no manifest.json of format iseg-project): refusing to replace it; name a new or "
                              "empty folder")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("exchanged", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("user_files", [False, True])
def test_write_project_interrupted_at_the_swap_keeps_the_old_project(tmp_path: Path, tiny_ckpt: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     user_files: bool, exchanged: bool) -> None:
    """With files of the user's in the old project (moved into the new one before the swap): moved back."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    assert main([str(cfg)]) == 0
    if user_files:
        (tmp_path / "out" / "build").mkdir()
        (tmp_path / "out" / "build" / "a.rpt").write_text("mine\n")
        (tmp_path / "out" / "NOTES.txt").write_text("mine\n")
    before = _snapshot(tmp_path)
    real_replace = os.replace

    def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        if Path(src).name.startswith(".out.tmp-"):  # the new project taking the old one's name
            raise KeyboardInterrupt
        real_replace(src, dst)

    def exchange(a: Path, b: Path) -> bool:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))  # the one-step swap failing

    if exchanged:
        monkeypatch.setattr(write_mod, "_exchange", exchange)
    else:  # a file system without RENAME_EXCHANGE: two renames, the second one failing
        monkeypatch.setattr(write_mod, "_exchange", lambda a, b: False)
        monkeypatch.setattr(write_mod.os, "replace", replace)
    with pytest.raises(IsegError if exchanged else KeyboardInterrupt):
        write_project({"manifest.json": "{}"}, tmp_path / "out")
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------
# 2. command-line arguments and --images: checked before anything is written
# --------------------------------------------------------------------------------------------
def _image_folders(root: Path) -> None:
    import numpy as np
    from PIL import Image

    h, w = PRESETS["tiny"].image
    for name in ("empty", "text", "zero", "truncated", "small", "onlytxt"):
        (root / name).mkdir()
    (root / "text" / "a.png").write_text("not an image\n")
    (root / "zero" / "a.png").write_bytes(b"")
    Image.fromarray(np.full((h, w, 3), 7, np.uint8)).save(root / "truncated" / "a.png")
    data = (root / "truncated" / "a.png").read_bytes()
    (root / "truncated" / "a.png").write_bytes(data[:len(data) // 2])
    Image.fromarray(np.zeros((h + 1, w, 3), np.uint8)).save(root / "small" / "a.png")
    (root / "onlytxt" / "notes.txt").write_text("x\n")


def _images_cases(root: Path) -> list[tuple[list[str], str]]:
    h, w = PRESETS["tiny"].image
    suffixes = ".bmp, .gif, .jpeg, .jpg, .pbm, .pgm, .png, .pnm, .ppm, .tga, .tif, .tiff, .webp"
    return [
        (["--images", "3"], "--images needs --csim"),
        (["--images", str(root / "small")], "--images needs --csim"),
        (["--csim", "--images", "0"], "--images: N must be >= 1, got '0'"),
        (["--csim", "--images", "-1"], "--images: '-1' is neither a count N >= 1 nor a folder of images"),
        (["--csim", "--images", "abc"], "--images: 'abc' is neither a count N >= 1 nor a folder of images"),
        (["--csim", "--images", str(root / "nope")],
         f"--images: {str(root / 'nope')!r} is neither a count N >= 1 nor a folder of images"),
        (["--csim", "--images", ""], "--images: empty argument (give a count N >= 1 or a folder of images)"),
        (["--csim", "--images", str(root / "empty")], f"{root / 'empty'}: folder holds no image files ({suffixes})"),
        (["--csim", "--images", str(root / "onlytxt")],
         f"{root / 'onlytxt'}: folder holds no image files ({suffixes})"),
        (["--csim", "--images", str(root / "text")], f"{root / 'text' / 'a.png'}: not an image file (unknown format)"),
        (["--csim", "--images", str(root / "zero")], f"{root / 'zero' / 'a.png'}: not an image file (unknown format)"),
        (["--csim", "--images", str(root / "truncated")],
         f"{root / 'truncated' / 'a.png'}: cannot decode: image file is truncated"),
        (["--csim", "--images", str(root / "small")],
         f"{root / 'small' / 'a.png'}: image is {h + 1}x{w}, the model expects {h}x{w}"),
    ]


def test_bad_images_keep_the_previous_project(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """A bad --images used to fail after "wrote ...": the previous project (and a user's note in it) was gone."""
    proj = tmp_path / "proj"
    proj.mkdir()
    cfg = write_config(proj, tiny_ckpt, outputs=["hls"])
    assert main([str(cfg)]) == 0
    (proj / "out" / "NOTES.txt").write_text("mine\n")
    capsys.readouterr()
    (tmp_path / "img").mkdir()
    _image_folders(tmp_path / "img")
    for args, line in _images_cases(tmp_path / "img"):
        _fails(capsys, [str(cfg), *args], f"gen-hls: error: {line}", tmp_path)


def test_bad_images_write_nothing(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    cfg = write_config(proj, tiny_ckpt, outputs=["hls"])
    (tmp_path / "img").mkdir()
    _image_folders(tmp_path / "img")
    for args, line in _images_cases(tmp_path / "img")[:3]:
        _fails(capsys, [str(cfg), *args], f"gen-hls: error: {line}", tmp_path)
    assert sorted(p.name for p in proj.iterdir()) == ["config.yaml"]


def test_csim_needs_c_sources_and_a_compiler(tmp_path: Path, tiny_ckpt: Path, capsys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Both used to surface from the C-simulation build, after the project was written."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    _fails(capsys, [str(cfg), "--csim"], "gen-hls: error: --csim: the config's outputs (report) hold no C sources "
           "to simulate; add hls or csim to outputs", tmp_path)
    monkeypatch.setenv("CXX", "no-such-compiler-iseg")
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["hls"])
    _fails(capsys, [str(cfg), "--csim"], "gen-hls: error: C-simulation needs a C++ compiler: "
           "'no-such-compiler-iseg' not found", tmp_path)
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report", "csim"])
    _fails(capsys, [str(cfg)], "gen-hls: error: C-simulation needs a C++ compiler: 'no-such-compiler-iseg' not found",
           tmp_path)


# --------------------------------------------------------------------------------------------
# 4. config values: clock, project name, repeated keys
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, shown", [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"), ("1.0e-300", "1e-300"),
                                          ("0.5", "0.5"), ("0", "0"), ("801", "801")])
def test_bad_clock(tmp_path: Path, tiny_ckpt: Path, capsys, value: str, shown: str) -> None:
    """.nan passed the schema (traceback later); 1.0e-300 exited 0 with freqHz=0."""
    cfg = _raw_config(tmp_path, tiny_ckpt, f"clock_mhz: {value}\n")
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: clock_mhz: must be a number of MHz in [1, 800], "
           f"got {shown}", tmp_path)


@pytest.mark.parametrize("text, value", [("2.5e2", 250.0), ("1e2", 100.0), ("2.5E+2", 250.0), ("250", 250)])
def test_clock_with_an_exponent(tmp_path: Path, tiny_ckpt: Path, text: str, value: float) -> None:
    """YAML 1.1 (PyYAML) reads 2.5e2 as a string: the config takes YAML 1.2's floats, so it is 250 MHz."""
    assert load_config(_raw_config(tmp_path, tiny_ckpt, f"clock_mhz: {text}\n")).clock_mhz == value


@pytest.mark.parametrize("key, text, got", [
    ("output", "2024", "2024 (YAML reads it as a number: write it in quotes)"),
    ("output", "2024-01-01", "2024-01-01 (YAML reads it as a date: write it in quotes)"),
    ("checkpoint", "3.5", "3.5 (YAML reads it as a number: write it in quotes)"),
])
def test_a_path_yaml_reads_as_a_number_says_so(tmp_path: Path, tiny_ckpt: Path, capsys, key: str, text: str,
                                              got: str) -> None:
    """``output: 2024-01-01`` said "got datetime.date(2024, 1, 1)"."""
    cfg = tmp_path / "config.yaml"
    data = {"checkpoint": str(tiny_ckpt), "output": "out", "project": "p", "board": "kv260", key: "@"}
    cfg.write_text("".join(f"{k}: {text if v == '@' else v}\n" for k, v in data.items()))
    what = ("a folder path (relative to the config file)" if key == "output"
            else "a path to a .safetensors quantized checkpoint (relative to the config file)")
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: {key}: must be {what}, got {got}", tmp_path)


@pytest.mark.parametrize("clock", [1, 100, 287.5, 800])
def test_good_clock(tmp_path: Path, tiny_ckpt: Path, clock: float) -> None:
    assert load_config(write_config(tmp_path, tiny_ckpt, clock_mhz=clock)).clock_mhz == clock


@pytest.mark.parametrize("name, why", [
    ("int", "is a C/C++ keyword (the project names the kernel's C function)"),
    ("class", "is a C/C++ keyword (the project names the kernel's C function)"),
    ("and", "is a C/C++ keyword (the project names the kernel's C function)"),
    *[(n, "is a name the generated sources or link.cfg already use (the project names the kernel's C function)")
      for n in ("main", "iseg", "iseg_tb", "hls", "Cfg", "weights_layout", "mm2s", "s2mm", "iseg_csim_run",
                "system_wrapper")],
    # declared by the C headers of tb.cpp / top.cpp (functions, types, lower-case macros): reserved.py's probe
    *[(n, "is a name the generated sources' headers (the C library, ap_int) declare (the project names the "
          "kernel's extern \"C\" function)")
      for n in ("printf", "getenv", "rand", "atoi", "strtol", "uint8_t", "size_t", "stdin", "alloca")],
    *[(n, "has no lower-case letter, the style of the headers' macros (a macro of that name would rewrite the "
          "kernel's; use lower case)") for n in ("ISEG_CHECK", "ISEG_PRAGMA", "EOF", "SEG", "X1")],
    ("__top", "is reserved in C++ (a double underscore, or _ and a capital letter)"),
    ("a__b", "is reserved in C++ (a double underscore, or _ and a capital letter)"),
    ("_Top", "is reserved in C++ (a double underscore, or _ and a capital letter)"),
])
def test_bad_project_name(tmp_path: Path, tiny_ckpt: Path, capsys, name: str, why: str) -> None:
    cfg = write_config(tmp_path, tiny_ckpt, project=name)
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: project: {name!r} {why}", tmp_path)


@pytest.mark.parametrize("name", ["mm2s_1", "top", "_top", "Main", "iseg_seg_t", "beat", "g_blob", "run"])
def test_good_project_name(tmp_path: Path, tiny_ckpt: Path, name: str) -> None:
    assert load_config(write_config(tmp_path, tiny_ckpt, project=name)).project == name


@pytest.mark.parametrize("extra, line", [
    ("board: u50\n", "config.yaml: board: duplicate key (line 5); a key may appear once"),
    ("project: other\n", "config.yaml: project: duplicate key (line 5); a key may appear once"),
    ("array:\n  rows: 4\n  cols: 8\n  rows: 2\n", "config.yaml: rows: duplicate key (line 8); a key may appear once"),
])
def test_duplicate_key(tmp_path: Path, tiny_ckpt: Path, capsys, extra: str, line: str) -> None:
    cfg = _raw_config(tmp_path, tiny_ckpt, extra)
    _fails(capsys, [str(cfg)], f"gen-hls: error: {line}", tmp_path)


def test_merge_key_may_be_overridden(tmp_path: Path, tiny_ckpt: Path) -> None:
    """A YAML merge (``<<``) followed by an explicit key is an override, not a repeat."""
    cfg = _raw_config(tmp_path, tiny_ckpt, "array: {<<: {rows: 4, cols: 8}, rows: 2}\n")
    assert load_config(cfg).array == (2, 8)


# --------------------------------------------------------------------------------------------
# 5. Ctrl-C: one line, exit 130, no output and no temporary folder
# --------------------------------------------------------------------------------------------
def test_interrupt_in_process(tmp_path: Path, tiny_ckpt: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from iseg.generator import plan

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(plan, "make_plan", interrupted)
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    _fails(capsys, [str(cfg)], "gen-hls: interrupted", tmp_path, rc=130)


@pytest.mark.parametrize("output", ["out", "new/deeper/out"])
def test_interrupt_while_writing(tmp_path: Path, tiny_ckpt: Path, capsys, monkeypatch: pytest.MonkeyPatch,
                                 output: str) -> None:
    """Interrupted half-way through the files: the temporary folder (and any folder made for it) is removed."""
    from pathlib import Path as P

    real = P.write_bytes
    calls = []

    def write_bytes(self: P, data: bytes) -> int:
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(P, "write_bytes", write_bytes)
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"], output=output)
    _fails(capsys, [str(cfg)], "gen-hls: interrupted", tmp_path, rc=130)
    assert len(calls) == 2


_SIGINT_SCRIPT = """
import os, signal, sys, time
from iseg.generator import plan
def make_plan(*a, **k):
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C (timeout signals the process, then its group)
    time.sleep(30)
plan.make_plan = make_plan
from iseg.generator.cli import main
sys.exit(main([sys.argv[1]]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_sigint(tmp_path: Path, tiny_ckpt: Path, sig: str) -> None:
    """A real SIGINT or SIGTERM (twice) during the plan: exit 128 + the signal, exactly one line, no traceback,
    nothing written (SIGTERM's default action ended the process at once, leaving the temporary folders)."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    before = _snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _SIGINT_SCRIPT.replace("SIGINT", sig), str(cfg)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (128 + getattr(signal, sig), "", "gen-hls: interrupted\n")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_swap_is_held_until_it_is_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           sig: int) -> None:
    """A signal between the renames that move the user's files and swap the projects left the output missing
    and the user's files in a hidden folder (a review's harness: 4 of 60 SIGTERMs): it is held, the swap ends,
    and it is raised after (InterruptedAfterWrite: the new project is in place)."""
    out = tmp_path / "out"
    write_project({"manifest.json": '{"format": "iseg-project"}', "a.txt": "old\n"}, out)
    (out / "NOTES.txt").write_text("mine\n")
    real = write_mod._carry

    def carry(*args: object, **kw: object) -> None:
        os.kill(os.getpid(), sig)  # held: delivered once the old project is deleted
        real(*args, **kw)

    monkeypatch.setattr(write_mod, "_carry", carry)
    previous = signal.signal(sig, signal.default_int_handler)  # SIGTERM too: a KeyboardInterrupt, as gen-hls's
    try:
        with pytest.raises(write_mod.InterruptedAfterWrite) as exc:
            write_project({"manifest.json": '{"format": "iseg-project"}', "a.txt": "new\n"}, out)
    finally:
        signal.signal(sig, previous)
    assert exc.value.args == (str(out),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .out.tmp- / .out.old- left
    assert (out / "a.txt").read_text() == "new\n" and (out / "NOTES.txt").read_text() == "mine\n"


def test_a_user_file_where_the_new_project_makes_a_folder_is_refused(tmp_path: Path) -> None:
    """A user's file named src in a report-only project, regenerated with hls (src/...): deleted silently with
    the old project, exit 0. Refused like a file in the way of a file; a link named so too."""
    out = tmp_path / "out"
    write_project({"manifest.json": '{"format": "iseg-project"}'}, out)
    (out / "src").write_text("mine\n")
    (out / "tb").symlink_to(tmp_path)
    before = _snapshot(tmp_path)
    for name in ("src", "tb"):
        with pytest.raises(IsegError) as exc:
            write_project({"manifest.json": '{"format": "iseg-project"}', f"{name}/top.cpp": "x"}, out)
        assert str(exc.value) == (f"{out}: {name} is not a file gen-hls wrote (the project's .iseg-generated does "
                                  "not list it) and the new project writes one there: move it aside, then run again")
        assert _snapshot(tmp_path) == before


def test_a_folder_a_killed_run_left_is_named_not_deleted(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """SIGKILL (which nothing can hold) mid-swap can leave .out.tmp-XXXXXXXX beside the output, perhaps with the
    user's files in it: the next run names it on stderr and leaves it."""
    cfg = write_config(tmp_path, tiny_ckpt, outputs=["report"])
    stale = tmp_path / ".out.tmp-abcd1234"
    stale.mkdir()
    (stale / "NOTES.txt").write_text("mine\n")
    (tmp_path / ".out.tmp-x").mkdir()  # not a name mkdtemp makes: not ours
    assert main([str(cfg)]) == 0
    err = capsys.readouterr().err
    assert err == (f"gen-hls: note: {stale} was left by a gen-hls run that was killed (SIGKILL or a power cut); it "
                   "may hold a previous project and files of yours: look, then delete it\n")
    assert (stale / "NOTES.txt").read_text() == "mine\n"


def test_runs_writing_one_output_at_once_take_turns(tmp_path: Path) -> None:
    """Two gen-hls runs into one output swapped each other's folders (a review: the user's files left in a
    hidden .old- folder, or 'Directory not empty'): they hold a turn on the output's folder (flock)."""
    import threading

    out = tmp_path / "out"
    write_project({"manifest.json": '{"format": "iseg-project"}'}, out)
    (out / "NOTES.txt").write_text("mine\n")
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for j in range(15):
                write_project({"manifest.json": '{"format": "iseg-project"}', "n.txt": f"{i} {j}\n"}, out)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [".iseg-generated", "NOTES.txt", "manifest.json", "n.txt"]
    assert (out / "NOTES.txt").read_text() == "mine\n"


def test_main_restores_the_sigint_handler(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    previous = signal.getsignal(signal.SIGINT)
    cfg = write_config(tmp_path, tiny_ckpt, board="zcu999")
    assert main([str(cfg)]) == 1
    capsys.readouterr()
    assert signal.getsignal(signal.SIGINT) is previous



# --------------------------------------------------------------------------------------------
# 6. found by fuzzing the config: each used to end in a traceback, a long hang or a bad project
# --------------------------------------------------------------------------------------------
def test_project_name_with_a_trailing_newline_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """The schema's ``$`` matches before a final newline: ``project: "x\\n"`` was accepted (exit 0)."""
    cfg = write_config(tmp_path, tiny_ckpt, project="x\n")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: project: must be a C identifier (letters, digits, _; "
           "not starting with a digit; <= 64 chars), got 'x\\n'", tmp_path)


@pytest.mark.parametrize("key", ["output", "checkpoint"])
def test_nul_in_a_path_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys, key: str) -> None:
    """``output: "o\\0x"`` ended in ``ValueError: embedded null byte``."""
    cfg = write_config(tmp_path, tiny_ckpt, **{key: "o\0x"})
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: {key}: 'o\\x00x' holds a NUL character, which no "
           "path may hold", tmp_path)


@pytest.mark.parametrize("key", ["output", "checkpoint"])
def test_a_path_name_too_long_is_refused_with_its_key(tmp_path: Path, tiny_ckpt: Path, capsys, key: str) -> None:
    """An OSError traceback (ENAMETOOLONG from Path.is_file); output d/<300 chars> failed only when writing."""
    long = ("d/" if key == "output" else "") + "x" * 300
    cfg = write_config(tmp_path, tiny_ckpt, **{key: long})
    why = ("File name too long" if key == "checkpoint" else
           f"the name '{'x' * 20}...xxxxxxxxxx' is 300 bytes long, more than the 255 a file name may have")
    _fails(capsys, [str(cfg)], f"gen-hls: error: config.yaml: {key}: {long!r}: {why}", tmp_path)


def test_yaml_nested_too_deeply_is_one_line(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """5000 nested lists: the YAML composer's RecursionError was a traceback."""
    cfg = _raw_config(tmp_path, tiny_ckpt, "array: " + "[" * 5000 + "]" * 5000 + "\n")
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: not a config: YAML nested too deeply", tmp_path)


# "billion laughs": 8 lines that expand to 9^8 values; jsonschema walked and quoted them for 12 s (9^9: minutes)
_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefg", "bcdefgh", strict=True)) + "image: *h\n"


@pytest.mark.parametrize("extra, line", [
    (_LAUGHS, "config.yaml: e: more than 10,000 values once the YAML aliases are expanded (a gen-hls config holds "
              "a dozen)"),
    ("image: &x [*x, 1]\n", "config.yaml: image: the value contains itself (a recursive YAML alias)"),
], ids=["billion-laughs", "recursive"])
def test_yaml_aliases_are_bounded(tmp_path: Path, tiny_ckpt: Path, capsys, extra: str, line: str) -> None:
    cfg = _raw_config(tmp_path, tiny_ckpt, extra)
    _fails(capsys, [str(cfg)], f"gen-hls: error: {line}", tmp_path)


def test_checkpoint_and_config_that_are_folders_are_named_so(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """Both said "no such file" of a folder that exists."""
    (tmp_path / "m.safetensors").mkdir()
    cfg = _raw_config(tmp_path, Path("m.safetensors"))
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: checkpoint: 'm.safetensors' is a folder, expected a "
           f".safetensors file (resolved to {tmp_path / 'm.safetensors'})", tmp_path)
    _fails(capsys, [str(tmp_path)], f"gen-hls: error: {tmp_path}: is a folder, expected a config file (.yaml)",
           tmp_path)


# --------------------------------------------------------------------------------------------
# 6. arrays that cannot fit: the refusal names the resource and the unit that takes most of it
# --------------------------------------------------------------------------------------------
def _wide_ckpt(folder: Path) -> Path:
    """One 384-wide block with a 1536-wide MLP on a 2 x 2 patch grid: tiny activations, large weights.

    Its weight buffer (hls/gemm.h: a whole GEMM's weights, ping-pong) at C = 8 holds max(K * ceil(N / 8)) =
    384 * 192 = 1536 * 48 = 73,728 rows of 8 bytes per half: 589,824 bytes = 128 BRAM36 (4,608 bytes each) per
    half, 256 in all, more than the 140 of a Zynq-7020."""
    from dataclasses import replace

    from .conftest import make_ckpt

    spec = replace(PRESETS["tiny"], dim=384, heads=6, layers=1, mlp_dim=1536, image=(16, 16), patch=8,
                   decoder="linear", dec_dim=0, dec_heads=0, dec_layers=0, dec_mlp_dim=0)
    return make_ckpt(folder, spec)


def _fails_matching(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str, root: Path) -> str:
    before = _snapshot(root)
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and re.fullmatch(pattern, err.rstrip("\n")), err
    assert _snapshot(root) == before
    return err


def test_auto_array_with_heads_of_18_channels_names_the_heads(tmp_path: Path, capsys) -> None:
    """Before: "no column count keeps the K/V load at II 2" (a branch marked unreachable); an explicit array already
    named the head size."""
    from dataclasses import replace

    from iseg.random_model import PRESETS

    from .conftest import make_ckpt

    cfg = write_config(tmp_path, make_ckpt(tmp_path, replace(PRESETS["tiny"], dim=72, heads=4)))
    _fails(capsys, [str(cfg)], "gen-hls: error: config.yaml: array: auto: heads of 18 channels leave m_axi beats of "
           "less than 4 bytes for any column count: the engine's stores write whole beats of at least 4 (head sizes "
           "multiples of 4)", tmp_path)


def test_auto_array_that_fits_nowhere_names_the_memory(tmp_path: Path, capsys) -> None:
    """Before: "no GEMM array fits pynq-z2", with nothing to act on."""
    cfg = write_config(tmp_path, _wide_ckpt(tmp_path), board="pynq-z2")
    _fails_matching(capsys, [str(cfg)], r"gen-hls: error: config\.yaml: array: auto: no GEMM array fits pynq-z2: the "
                    r"smallest, 2x8 with the fewest lanes, needs [\d,]+ BRAM36 \(limit 112 of 140; w_buffers 256\)",
                    tmp_path)


def test_explicit_array_beyond_the_device_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    """An explicit array may exceed the planner's caps (80 % DSP ...) but not the device: before, only DSPs were
    checked, and a 2 x 8 array whose buffers need 256 BRAM36 on a 140-BRAM board was generated without a word."""
    cfg = write_config(tmp_path, _wide_ckpt(tmp_path), board="pynq-z2", array={"rows": 2, "cols": 8})
    _fails_matching(capsys, [str(cfg)], r"gen-hls: error: config\.yaml: array: 2x8 needs [\d,]+ BRAM36 "
                    r"\(limit 140; w_buffers 256\) on pynq-z2", tmp_path)
    # 64 x 64 on KV260: 4,096 MACs, two per DSP48E2 -> 2,048 array DSPs of 1,248; a bank per row of the
    # ping-pong left operand -> 128 BRAM36 of 144; 4,096 x 36 LUTs (a packed MAC at the tiny model's proven
    # 24-bit accumulators: adder 24 + readout 12, docs/gen-hls.md "LUTs of the array") of 117,120
    (tmp_path / "t").mkdir()
    cfg = write_config(tmp_path / "t", tiny_ckpt, array={"rows": 64, "cols": 64})
    _fails_matching(capsys, [str(cfg)], r"gen-hls: error: config\.yaml: array: 64x64 needs [\d,]+ DSPs "
                    r"\(limit 1,248; gemm_array 2,048\), [\d,]+ BRAM36 \(limit 144; a_buffers 128\), "
                    r"[\d,]+ LUTs \(limit 117,120; gemm_array 147,456\) on kv260", tmp_path)


def test_layernorm_wider_than_the_loader_is_refused(tmp_path: Path, tiny_ckpt: Path, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The LayerNorm loader multiplies by K in kLnKBits signed bits (K <= 2047); a wider LayerNorm is one line at
    plan time, not a C-simulation failure (checked here with the width cut to 5 bits, K <= 15)."""
    from iseg.generator import estimate as est

    monkeypatch.setitem(est.STRUCT_WIDTHS, "kLnKBits", 5)
    cfg = _raw_config(tmp_path, tiny_ckpt)
    before = _snapshot(tmp_path)
    assert main([str(cfg), "--plan"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("gen-hls: error: checkpoint: ")
    assert "channels exceeds the engine's 15 (hls/mul.h kLnKBits)" in err
    assert _snapshot(tmp_path) == before
