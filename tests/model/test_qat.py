"""QAT: single process, and two gloo processes under DDP computing the same fine-tuning.

The two-process run uses the same entry (``init_process_group`` from RANK/WORLD_SIZE, as under
``torchrun``) on the same global batches; DDP averages the gradients and the range observers
all-reduce their maxima (no buffer sync needed), so both ranks must end identical, and equal to the single-process run
up to float summation order (tolerance 1e-4 on the weights after a few steps).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iseg.checkpoint import load  # noqa: E402
from iseg.model.calibrate import load_data  # noqa: E402
from iseg.model.loaders import save_fp  # noqa: E402
from iseg.model.qat import QatConfig, qat  # noqa: E402
from iseg.model.segmenter import Segmenter, SegmenterConfig  # noqa: E402

pytestmark = pytest.mark.torch

CFG = SegmenterConfig(d_model=16, n_heads=2, n_layers=1, patch_size=8, image_size=(16, 16), n_cls=8,
                      dec_n_layers=1, dec_n_heads=2, l2norm=False, upsample="nearest", gelu="lambda")
QCFG = QatConfig(steps=3, batch_size=4, lr=1e-3, train_count=64)


def tiny_fp() -> Segmenter:
    torch.manual_seed(1)
    return Segmenter(CFG).eval()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        fp = tiny_fp()
        images, _ = load_data("synthetic:2", CFG.image_size)
        lines: list[str] = []
        qm = qat(fp, images, QCFG, log=lines.append)
        state = {k: v.detach().clone() for k, v in qm.state_dict().items()}
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))
        with open(os.path.join(out, f"rank{rank}.log"), "w") as f:
            f.write("\n".join(lines))
    finally:
        torch.distributed.destroy_process_group()


def test_qat_ddp_two_processes_match_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ on {k}"

    fp = tiny_fp()
    before = {k: v.clone() for k, v in fp.state_dict().items()}
    images, _ = load_data("synthetic:2", CFG.image_size)
    lines: list[str] = []
    qm = qat(fp, images, QCFG, log=lines.append)
    single = qm.state_dict()
    # rank 0 logs the global batch's loss (all-reduced), not its own half's: the single process's, to the sums' order
    logged = (tmp_path / "rank0.log").read_text().splitlines()
    assert (tmp_path / "rank1.log").read_text() == "" and len(logged) == len(lines) == 2
    for a, b in zip(logged, lines, strict=True):
        assert a.rsplit(" ", 1)[0] == b.rsplit(" ", 1)[0]  # "qat step 1/3 loss"
        assert abs(float(a.rsplit(" ", 1)[1]) - float(b.rsplit(" ", 1)[1])) <= 2e-4, (a, b)
    moved = 0
    for k, v in single.items():
        torch.testing.assert_close(r0[k], v, atol=1e-4, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
        if k.startswith("fp.") and not torch.equal(before[k[3:]], v):
            moved += 1
    assert moved > 10  # the fine-tuning did change the weights
    assert all(float(v) > 0 for k, v in single.items() if k.endswith(".amax"))


def test_qat_cli_single_process(tmp_path):
    from iseg.model import qat as qat_mod

    fp_path, out = tmp_path / "fp.safetensors", tmp_path / "q.safetensors"
    save_fp(tiny_fp(), fp_path)
    rc = qat_mod.main([str(fp_path), "--out", str(out), "--calib", "synthetic:1", "--steps", "2",
                       "--batch-size", "2", "--save-fp", str(tmp_path / "ft.safetensors")])
    assert rc == 0
    ck = load(out)
    assert ck.info["method"] == "qat" and ck.info["processes"] == 1
    assert (tmp_path / "ft.safetensors").exists()
    assert np.all([t.dtype.kind == "i" for t in ck.tensors.values()])


def test_qat_module_entry_is_the_cli(tmp_path):
    """``torchrun -m iseg.model.qat`` runs this module: it must parse and fail as ``iseg qat`` does."""
    r = subprocess.run([sys.executable, "-m", "iseg.model.qat", str(tmp_path / "missing.safetensors"), "--out",
                        str(tmp_path / "q.safetensors")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("iseg: error: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "q.safetensors").exists()


def test_qat_rejects_bad_schedule():
    from iseg.errors import IsegError

    with pytest.raises(IsegError, match="--lr"):
        from iseg.model import qat as qat_mod

        qat_mod.run(type("A", (), {"steps": 1, "batch_size": 1, "lr": 0.0})())


def test_qat_help_states_the_defaults() -> None:
    import argparse

    from iseg.model.qat import add_arguments

    parser = argparse.ArgumentParser(prog="iseg qat")
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert f"(default {QatConfig.steps})" in text and f"default {QatConfig.batch_size})" in text
    assert f"(default {QatConfig.lr:g})" in text


@pytest.mark.parametrize("command", ["train", "quantize", "qat", "eval"])
def test_threads_option(command: str) -> None:
    """Every torch command takes the same --threads: set before any torch work; 0 is refused while parsing."""
    import argparse

    import torch

    from iseg.errors import IsegError
    from iseg.model import calibrate, eval_int, qat, train

    mod = {"train": train, "quantize": calibrate, "qat": qat, "eval": eval_int}[command]
    parser = argparse.ArgumentParser(prog=f"iseg {command}")
    mod.add_arguments(parser)
    base = {"train": ["--out", "run"], "eval": ["m.safetensors"]}.get(
        command, ["m.safetensors", "--out", "q.safetensors"])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # so that the option has something to change
        calibrate.apply_threads(parser.parse_args(base + ["--threads", "1"]))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(IsegError, match="--threads"):
        parser.parse_args(base + ["--threads", "0"])
