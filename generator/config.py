"""``config.yaml`` of ``gen-hls``: a JSON schema, and errors that name the offending key.

The schema is the single list of what a config may hold. Validation goes key by key through
jsonschema; the first failure becomes one line ``config.yaml: array.rows: must be a positive
integer``, so a user never reads a jsonschema dump. Paths in the config are relative to the
config file, so a config and its checkpoint can move together.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from iseg.errors import IsegError
from iseg.generator.boards import BOARDS, DEFAULT_BUDGET, Board, Budget
from iseg.generator.reserved_names import C_LIBRARY_NAMES
from iseg.generator.write import output_problem
from iseg.imageio import check_path_names

__all__ = ["OUTPUTS", "SCHEMA", "Config", "load_config", "parse_budget_option", "parse_config", "resolved_yaml"]

OUTPUTS = ("hls", "rtl", "csim", "report")
DEFAULT_OUTPUTS = ("hls", "report")

_POS_INT = {"type": "integer", "minimum": 1}
_SHARE = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}  # a share of a device resource
_PROJECT_RE = r"[A-Za-z_][A-Za-z0-9_]{0,63}"  # a C identifier of at most 64 characters
# The accepted kernel clock, MHz. The boards' typical clocks are 100-300 MHz; below 1 MHz the
# scripts' freqHz / period would round to nonsense (1e-300 MHz gave freqHz=0), above 800 MHz no
# supported fabric closes timing.
CLOCK_MHZ = (1, 800)

# Names ``project`` must not take: it becomes the extern "C" top function of top.cpp and tb.cpp
# (so no C/C++ keyword, no global name of the generated sources (the test bench keeps its own in namespace
# iseg_tb), and no name their C headers declare or define: reserved_names.C_LIBRARY_NAMES, probed by reserved.py)
# and the kernel / instance names of link.cfg (so not a data mover's) or a module of bd.tcl's block design.
_CXX_KEYWORDS = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t
    class compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield
    decltype default delete do double dynamic_cast else enum explicit export extern false float for friend
    goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private
    protected public register reinterpret_cast requires restrict return short signed sizeof static
    static_assert static_cast struct switch template this thread_local throw true try typedef typeid
    typename union unsigned using virtual void volatile wchar_t while xor xor_eq
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local
""".split())
_GENERATED_NAMES = frozenset("""
    main iseg iseg_tb hls std Cfg weights_layout mm2s s2mm system system_wrapper
    iseg_csim_run iseg_csim_last_error iseg_csim_cycles
    ap_int ap_uint ap_fixed ap_ufixed ap_axis ap_axiu qdma_axis
""".split())

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["checkpoint", "output", "project", "board"],
    "properties": {
        "checkpoint": {"type": "string", "minLength": 1},
        "output": {"type": "string", "minLength": 1},
        "project": {"type": "string", "pattern": "^" + _PROJECT_RE + "$"},
        "board": {"enum": list(BOARDS)},
        "clock_mhz": {"type": "number", "minimum": CLOCK_MHZ[0], "maximum": CLOCK_MHZ[1]},
        "array": {
            "oneOf": [
                {"const": "auto"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rows", "cols"],
                    "properties": {"rows": _POS_INT, "cols": _POS_INT, "macs_per_dsp": {"enum": [1, 2]},
                                   "k_unroll": {"enum": [1, 2, 4]}},
                },
            ]
        },
        "budget": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"dsp": _SHARE, "lut": _SHARE, "memory": _SHARE},
        },
        "image": {"type": "array", "items": _POS_INT, "minItems": 2, "maxItems": 2},
        "outputs": {"type": "array", "items": {"enum": list(OUTPUTS)}, "uniqueItems": True, "minItems": 1},
    },
}

# What a bad value of each key must be (keys are dotted paths with list indices as "[]").
_MESSAGES = {
    "": "must be a mapping of config keys",
    "checkpoint": "must be a path to a .safetensors quantized checkpoint (relative to the config file)",
    "output": "must be a folder path (relative to the config file)",
    "project": "must be a C identifier (letters, digits, _; not starting with a digit; <= 64 chars)",
    "board": f"must be one of {', '.join(BOARDS)}",
    "clock_mhz": f"must be a number of MHz in [{CLOCK_MHZ[0]}, {CLOCK_MHZ[1]}]",
    "array": "must be 'auto' or {rows: R, cols: C} (optionally macs_per_dsp: 1 or 2, k_unroll: 1, 2 or 4)",
    "array.rows": "must be a positive integer",
    "array.cols": "must be a positive integer",
    "array.macs_per_dsp": "must be 1 or 2 (int8 MACs per DSP: 2 packs row pairs into a DSP48E2)",
    "array.k_unroll": "must be 1, 2 or 4 (k per step of a PE: a chain of that many DSPs per output)",
    "budget": "must be a mapping of dsp, lut, memory: the share of the device the auto array may use",
    "budget.dsp": "must be a share of the device's DSPs in (0, 1] (default 0.8)",
    "budget.lut": "must be a share of the device's LUTs in (0, 1] (default 0.7)",
    "budget.memory": "must be a share of the device's BRAM36 and URAM in (0, 1] (default 0.8)",
    "image": "must be [H, W], two positive integers",
    "image.[]": "must be a positive integer",
    "outputs": f"must be a non-empty list of distinct items from {', '.join(OUTPUTS)}",
    "outputs.[]": f"must be one of {', '.join(OUTPUTS)}",
}

_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Config:
    """A validated config with its paths resolved (absolute) and its defaults filled in."""

    source: Path  # the config file (for messages)
    checkpoint: Path
    output: Path
    project: str
    board: Board
    clock_mhz: float
    array: tuple[int, int] | None  # (rows, cols); None = auto
    image: tuple[int, int] | None  # None = the checkpoint's
    outputs: tuple[str, ...]
    array_pack: int = 0  # array.macs_per_dsp (Cfg::PACK); 0 = auto, or the most an explicit array allows
    array_kd: int = 1  # array.k_unroll (Cfg::KD): k per step of a PE
    budget: Budget = DEFAULT_BUDGET  # what array: auto may take of the device (boards.Budget)


def _path_of(error: Any) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append("[]" if isinstance(p, int) else str(p))
    return ".".join(parts)


def _shown_path(error: Any) -> str:
    parts: list[str] = []
    for p in error.absolute_path:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
        else:
            parts.append(str(p))
    return ".".join(parts)


def _error_line(name: str, error: Any) -> str:
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        where = _shown_path(error)
        key = f"{where}.{extra[0]}" if where else extra[0]
        return f"{name}: {key}: unknown key (allowed: {', '.join(known)})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        where = _shown_path(error)
        key = f"{where}.{missing[0]}" if where else missing[0]
        return f"{name}: {key}: missing (required)"
    path = _path_of(error)
    msg = _MESSAGES.get(path, error.message)
    return f"{name}: {_shown_path(error) or '(top level)'}: {msg}, got {_got(error)}"


def _got(error: Any) -> str:
    """The refused value as written, with a hint where YAML read a path or name as something else (``output: 2024``
    is a number, ``output: 2024-01-01`` a date: both need quotes)."""
    v = error.instance
    shown = v.isoformat() if isinstance(v, (datetime.date, datetime.datetime)) else repr(v)
    if (_path_of(error) in ("checkpoint", "output") and error.validator == "type" and not isinstance(v, bool)
            and isinstance(v, (int, float, datetime.date))):
        kind = "a date" if isinstance(v, datetime.date) else "a number"
        return f"{shown} (YAML reads it as {kind}: write it in quotes)"
    return shown


def _first_error(data: Any) -> Any | None:
    """The first failure, in document order, preferring the deepest (most specific) one."""
    errors = list(_VALIDATOR.iter_errors(data))
    if not errors:
        return None

    def key(e: Any) -> tuple:
        return (tuple(str(p) for p in e.absolute_path), -len(e.absolute_path))

    errors.sort(key=key)
    best = errors[0]
    # oneOf/anyOf under one key: report the key itself (the message lists the accepted forms)
    if best.validator in ("oneOf", "anyOf") and best.context:
        deep = [c for c in best.context if c.validator not in ("type", "const")]
        if deep and isinstance(best.instance, dict):
            return sorted(deep, key=key)[0]
    return best


def _check_project_name(name: str, project: str) -> None:
    """Refuse a project name that would not compile or link: it is the top's C function and kernel name."""
    if not re.fullmatch(_PROJECT_RE, project):  # the schema's pattern lets a trailing newline through ("x\n")
        raise IsegError(f"{name}: project: {_MESSAGES['project']}, got {project!r}")
    if project in _CXX_KEYWORDS:
        raise IsegError(f"{name}: project: {project!r} is a C/C++ keyword (the project names the kernel's "
                        "C function)")
    if project in _GENERATED_NAMES:
        raise IsegError(f"{name}: project: {project!r} is a name the generated sources or link.cfg already "
                        "use (the project names the kernel's C function)")
    if project in C_LIBRARY_NAMES:
        raise IsegError(f"{name}: project: {project!r} is a name the generated sources' headers (the C library, "
                        "ap_int) declare (the project names the kernel's extern \"C\" function)")
    if not any(c.islower() for c in project):
        raise IsegError(f"{name}: project: {project!r} has no lower-case letter, the style of the headers' macros "
                        "(a macro of that name would rewrite the kernel's; use lower case)")
    if "__" in project or (project[0] == "_" and len(project) > 1 and project[1].isupper()):
        raise IsegError(f"{name}: project: {project!r} is reserved in C++ (a double underscore, or _ and a "
                        "capital letter)")


def _budget_of(shares: dict[str, Any], name: str) -> Budget:
    """A schema-valid ``budget`` mapping as a Budget (the default's shares for the keys it leaves out)."""
    for key, v in shares.items():
        if not math.isfinite(v):  # NaN passes every jsonschema bound
            raise IsegError(f"{name}: budget.{key}: {_MESSAGES['budget.' + key]}, got {v!r}")
    return Budget(**{k: float(v) for k, v in shares.items()})


def parse_budget_option(text: str) -> Budget:
    """``dsp=0.9,lut=0.75`` (the benchmarks' --budget) as a Budget, validated as the config's ``budget`` is."""
    shares: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        try:
            shares[key.strip()] = float(value) if eq else value
        except ValueError:
            shares[key.strip()] = value
    err = _first_error({"checkpoint": "-", "output": "-", "project": "p", "board": "kv260", "budget": shares})
    if err is not None:
        raise IsegError(_error_line("--budget", err))
    return _budget_of(shares, "--budget")


def parse_config(data: Any, source: Path) -> Config:
    """Validate an already-parsed config mapping; paths resolve against ``source``'s folder."""
    name = source.name
    err = _first_error(data)
    if err is not None:
        raise IsegError(_error_line(name, err))
    clock = data.get("clock_mhz")
    if clock is not None and not math.isfinite(clock):  # NaN passes every jsonschema bound
        raise IsegError(f"{name}: clock_mhz: {_MESSAGES['clock_mhz']}, got {clock!r}")
    _check_project_name(name, data["project"])
    base = source.parent
    board = BOARDS[data["board"]]
    arr = data.get("array", "auto")
    array = None if arr == "auto" else (int(arr["rows"]), int(arr["cols"]))
    pack = 0 if arr == "auto" else int(arr.get("macs_per_dsp", 0))
    kd = 1 if arr == "auto" else int(arr.get("k_unroll", 1))
    budget = DEFAULT_BUDGET
    if "budget" in data:
        if array is not None:
            raise IsegError(f"{name}: budget: only array: auto uses it (an explicit array, here {array[0]}x{array[1]}, "
                            "is checked against the whole device); remove one of the two")
        budget = _budget_of(data["budget"], name)
    image = tuple(int(v) for v in data["image"]) if "image" in data else None
    outputs = tuple(o for o in OUTPUTS if o in data.get("outputs", DEFAULT_OUTPUTS))
    for key in ("checkpoint", "output"):
        if "\0" in data[key]:  # no file system takes it (os.stat raises ValueError)
            raise IsegError(f"{name}: {key}: {data[key]!r} holds a NUL character, which no path may hold")
    key = "checkpoint"
    try:  # an OSError here is the path itself refused (a name too long): named with its key
        ckpt = Path(os.path.normpath(base / data["checkpoint"]))
        if not ckpt.is_file():
            if not ckpt.exists():
                raise IsegError(f"{name}: checkpoint: no such file {data['checkpoint']!r} (resolved to {ckpt})")
            why = "is a folder" if ckpt.is_dir() else "is not a regular file"
            raise IsegError(f"{name}: checkpoint: {data['checkpoint']!r} {why}, expected a .safetensors file "
                            f"(resolved to {ckpt})")
        key = "output"
        out = Path(os.path.normpath(base / data["output"]))
        check_path_names(out, f"{name}: output: {data['output']!r}")  # before the work, not when writing
        if out == ckpt.parent or ckpt.is_relative_to(out):
            raise IsegError(f"{name}: output: {data['output']!r} would replace the folder holding the checkpoint")
        problem = output_problem(out, (source, ckpt))
    except OSError as exc:
        raise IsegError(f"{name}: {key}: {data[key]!r}: {exc.strerror or exc}") from None
    if problem is not None:
        raise IsegError(f"{name}: output: {data['output']!r} {problem}")
    return Config(source=source, checkpoint=ckpt, output=out, project=data["project"], board=board,
                  clock_mhz=float(data.get("clock_mhz", board.clock_mhz)), array=array,
                  image=image, outputs=outputs, array_pack=pack, array_kd=kd,
                  budget=budget)  # type: ignore[arg-type]


class _DuplicateKey(Exception):
    """A mapping of the config repeats a key (YAML would silently keep the last value)."""

    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key = key
        self.line = line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a repeated key: ``board`` given twice is a mistake, not an override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": explicit keys may override merged ones
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:  # unhashable: SafeLoader reports it below
                continue
            if dup:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats with an exponent and no sign or no dot (2.5e2, 1e3): YAML 1.1, PyYAML's, reads them as strings,
# so `clock_mhz: 2.5e2` was refused as "got '2.5e2'"
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


# A config holds a dozen values. YAML aliases can make a few lines expand to billions of them ("billion
# laughs"), which jsonschema would walk and quote in its messages for minutes: refused before validation.
MAX_CONFIG_VALUES = 10_000


def _check_expanded_size(name: str, data: Any) -> None:
    """Refuse a config whose values, aliases expanded, exceed MAX_CONFIG_VALUES, or that contains itself."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(v: Any) -> int:
        if not isinstance(v, list | dict):
            return 1
        if id(v) in memo:
            return memo[id(v)]
        if id(v) in active:
            raise _Recursive
        active.add(id(v))
        n = 1
        for item in (v.values() if isinstance(v, dict) else v):
            n += size(item)
            if n > MAX_CONFIG_VALUES:
                break
        active.discard(id(v))
        memo[id(v)] = n
        return n

    if not isinstance(data, dict):
        return  # parse_config names it
    total = 0
    for key, value in data.items():
        try:
            total += size(value)
        except _Recursive:
            raise IsegError(f"{name}: {key}: the value contains itself (a recursive YAML alias)") from None
        if total > MAX_CONFIG_VALUES:
            raise IsegError(f"{name}: {key}: more than {MAX_CONFIG_VALUES:,} values once the YAML aliases are "
                            "expanded (a gen-hls config holds a dozen)")


class _Recursive(Exception):
    """A list or mapping of the config that contains itself (``&a [*a]``)."""


def load_config(path: str | os.PathLike) -> Config:
    """Read, validate and resolve a config file; any defect is one IsegError line."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise IsegError(f"{path}: is a folder, expected a config file (.yaml)")
        if path.exists():
            raise IsegError(f"{path}: is not a regular file, expected a config file (.yaml)")
        raise IsegError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader)
        _check_expanded_size(path.name, data)
    except RecursionError:
        raise IsegError(f"{path.name}: not a config: YAML nested too deeply") from None
    except UnicodeDecodeError:
        raise IsegError(f"{path.name}: not a UTF-8 text file") from None
    except OSError as exc:
        raise IsegError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except _DuplicateKey as exc:
        raise IsegError(f"{path.name}: {exc.key}: duplicate key (line {exc.line}); a key may appear once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise IsegError(f"{path.name}: not valid YAML{where}") from None
    return parse_config(data, path.resolve())


def resolved_yaml(cfg: Config, image: tuple[int, int], array: tuple[int, int], checkpoint_sha256: str,
                  pack: int = 0, kd: int = 1) -> str:
    """The project's own ``config.yaml``: a valid gen-hls config that regenerates this very project, with what
    the generator decided (the checkpoint's hash, the array ``auto`` chose) as comments.

    Relocatable: the checkpoint is named by file name (copy it beside the config), the output is a folder
    beside it (gen-hls never writes over the folder holding its config), so the copy holds no absolute path.
    ``array: auto`` stays auto with its budget (the planner is deterministic: the same array again); an explicit
    array keeps its rows and columns and gains the packing and K unroll it was built with."""
    r, c = array
    if cfg.array is None:
        chose = f"# array: auto chose {r}x{c}, {pack or 1} MAC(s) per DSP, K unroll {kd}, within the budget below\n"
        arr: Any = "auto"
    else:
        chose = ""
        arr = {"rows": r, "cols": c, **({"macs_per_dsp": pack} if pack else {}), **({"k_unroll": kd} if kd > 1 else {})}
    doc = {
        "checkpoint": cfg.checkpoint.name,
        "output": "regenerated",
        "project": cfg.project,
        "board": cfg.board.name,
        "clock_mhz": _num(cfg.clock_mhz),
        "array": arr,
        **({"budget": {k: _num(v) for k, v in asdict(cfg.budget).items()}} if cfg.array is None else {}),
        "image": list(image),
        "outputs": list(cfg.outputs),
    }
    head = ("# gen-hls config of this project, written by gen-hls: with the checkpoint copied beside this file,\n"
            "# `gen-hls config.yaml` generates the same project again, into regenerated/.\n"
            f"# checkpoint sha256: {checkpoint_sha256}\n{chose}")
    return head + yaml.safe_dump(doc, sort_keys=False)


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


