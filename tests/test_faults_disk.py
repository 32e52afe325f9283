"""Faults of the disk and of sizes (issue 11, items 6, 7 and 9): a full disk while
writing datasets, checkpoints and evaluation outputs, folders that cannot be written,
and sizes that cannot fit. Each ends in one line on stderr and the documented exit code
(1: not enough room, 2: an unwritable location), with no traceback and no crash; the
partial files are removed and earlier results stay intact.

Disk-full errors are injected at the write (always run); where the tests run as root
and may mount, a real small tmpfs (and read-only mounts) are used as well.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest
import torch

from pbdl_cli.utils import space
from tests.conftest import _CHECKED_MAIN, REPO, cli_env, run_cli
from tests.test_faults import assert_one_line_error

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
#: how h5py words a full disk when it raises a RuntimeError (no errno attribute)
H5PY_FULL = RuntimeError(
    "Can't write data (file write failed: errno = 28, error message = 'No space left on device')"
)


def run_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str):
    """``pbdl ARGS`` in this process (so that monkeypatched faults apply): the exit code
    and what it printed, as a CompletedProcess."""
    from pbdl_cli.cli import main

    monkeypatch.delenv("PBDL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["pbdl", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    code = exit_.value.code if isinstance(exit_.value.code, int) else 0
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def leftovers(folder: Path) -> list[Path]:
    """Partial and temporary files or folders anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if ".partial" in p.name or ".tmp" in p.name]


def results(folder: Path) -> dict[str, bytes]:
    """The files in ``folder`` and their bytes (not the logs, which each attempt extends)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix != ".log"}


def fail_after(calls: int, error: BaseException, original):
    """A stand-in for ``original`` that works ``calls`` times, then raises ``error``."""
    count = [0]

    def patched(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise error
        return original(*args, **kwargs)

    return patched


# -- item 6: a full disk, injected at the write ---------------------------------------------
@pytest.mark.parametrize("error", [ENOSPC, H5PY_FULL], ids=["oserror", "h5py-runtimeerror"])
def test_a_full_disk_while_generating_removes_the_partial_dataset_and_keeps_the_old_one(
    workdir, monkeypatch, capsys, one_thread, error
):
    first = run_here(monkeypatch, capsys, "generate", "debug=smoke", "data.name=d")
    assert first.returncode == 0, first.stderr
    dataset = workdir / "datasets" / "burgers" / "d"
    before = {p.name: p.read_bytes() for p in dataset.iterdir()}

    setitem = h5py.Dataset.__setitem__
    monkeypatch.setattr(h5py.Dataset, "__setitem__", fail_after(1, error, setitem))
    again = run_here(
        monkeypatch, capsys, "generate", "debug=smoke", "data.name=d", "overwrite=true"
    )
    assert_one_line_error(again, 1, "no space left on the device", "train.h5", "needs about")
    assert {p.name: p.read_bytes() for p in dataset.iterdir()} == before
    assert leftovers(workdir / "datasets") == []


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_complete_one(
    workdir, monkeypatch, capsys, one_thread
):
    first = run_here(monkeypatch, capsys, "train", "debug=smoke", "hydra.run.dir=run")
    assert first.returncode == 0, first.stderr
    last = workdir / "run" / "checkpoints" / "last.pt"
    saved = last.read_bytes()

    opened = pathlib.Path.open

    def full_disk_for_checkpoints(self, mode="r", *args, **kwargs):
        handle = opened(self, mode, *args, **kwargs)
        if "w" in mode and self.name.startswith(".last.pt."):
            handle.write = lambda data: (_ for _ in ()).throw(ENOSPC)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(pathlib.Path, "open", full_disk_for_checkpoints)
    again = run_here(
        monkeypatch,
        capsys,
        "train",
        "debug=smoke",
        "resume=true",
        "trainer.lbfgs_steps=3",
        "hydra.run.dir=run",
    )
    assert_one_line_error(again, 1, "no space left on the device", str(Path("checkpoints/last.pt")))
    assert last.read_bytes() == saved
    assert leftovers(workdir / "run") == []


def test_a_full_disk_while_writing_evaluation_outputs_keeps_the_earlier_ones(
    workdir, monkeypatch, capsys, one_thread
):
    assert (
        run_here(monkeypatch, capsys, "train", "debug=smoke", "hydra.run.dir=run").returncode == 0
    )
    assert run_here(monkeypatch, capsys, "evaluate", "run=run", "plots=false").returncode == 0
    eval_dir = workdir / "run" / "eval"
    before = results(eval_dir)
    assert "metrics.json" in before and "prediction.h5" in before

    setitem = h5py.Dataset.__setitem__
    monkeypatch.setattr(h5py.Dataset, "__setitem__", fail_after(0, ENOSPC, setitem))
    again = run_here(monkeypatch, capsys, "evaluate", "run=run", "plots=false")
    assert_one_line_error(again, 1, "no space left on the device", "prediction.h5")
    assert results(eval_dir) == before
    assert leftovers(eval_dir) == []


def test_a_full_disk_that_no_writer_names_still_ends_in_one_line(
    workdir, monkeypatch, capsys, one_thread
):
    from pbdl_cli.stages.train import Train

    def full(self, settings, run_dir):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", str(run_dir / "metrics.jsonl"))

    monkeypatch.setattr(Train, "_train", full)
    result = run_here(monkeypatch, capsys, "train", "debug=smoke", "hydra.run.dir=run")
    assert_one_line_error(result, 1, "no space left on the device", "metrics.jsonl")


def test_disk_full_errors_are_recognized_by_errno_and_by_their_wording():
    assert space.is_disk_full(OSError(errno.ENOSPC, "x"))
    assert space.is_disk_full(OSError(errno.EDQUOT, "x"))
    assert space.is_disk_full(H5PY_FULL)
    try:  # raised from one: h5py's errors are often chained
        try:
            raise ENOSPC
        except OSError as cause:
            raise ValueError("write failed") from cause
    except ValueError as chained:
        assert space.is_disk_full(chained)
    assert not space.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not space.is_disk_full(RuntimeError("unexpected pos 704 vs 598"))
    assert not space.is_disk_full(ValueError("No space left on device"))  # not an I/O error


# -- item 7: unwritable locations, injected through os.access --------------------------------
@contextlib.contextmanager
def unwritable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Iterator[None]:
    """``os.access`` says ``folder`` cannot be written (as for a user without permission)."""
    access = os.access
    folder = folder.resolve()

    def denied(path, mode, *args, **kwargs):
        if Path(path).resolve() == folder and mode & os.W_OK:
            return False
        return access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", denied)
    yield
    monkeypatch.setattr(os, "access", access)


def test_unwritable_locations_are_refused_before_anything_runs(
    workdir, monkeypatch, capsys, one_thread
):
    locked = workdir / "locked"
    locked.mkdir()
    with unwritable(monkeypatch, locked):
        for args, needle in [
            (["generate", "data.root=locked"], "dataset folder locked/burgers"),
            (["generate", "hydra.run.dir=locked/run"], "run directory locked/run"),
            (["train", "hydra.run.dir=locked/run"], "run directory locked/run"),
            (["generate", "-m", "seed=0,1", "hydra.sweep.dir=locked/s"], "sweep directory"),
        ]:
            result = run_here(monkeypatch, capsys, *args, "debug=smoke")
            assert_one_line_error(result, 2, "cannot write the " + needle, "not writable")
    assert list(locked.iterdir()) == []
    assert not (workdir / "datasets").exists() and not (workdir / "outputs").exists()


def test_resuming_with_unwritable_checkpoints_is_refused_before_training(
    workdir, monkeypatch, capsys, one_thread
):
    assert (
        run_here(monkeypatch, capsys, "train", "debug=smoke", "hydra.run.dir=run").returncode == 0
    )
    checkpoints = workdir / "run" / "checkpoints"
    saved = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    metrics = (workdir / "run" / "metrics.jsonl").read_bytes()
    with unwritable(monkeypatch, checkpoints):
        result = run_here(
            monkeypatch, capsys, "train", "debug=smoke", "resume=true", "hydra.run.dir=run"
        )
    assert_one_line_error(result, 2, "cannot write the checkpoint folder", "checkpoints")
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == saved
    assert (workdir / "run" / "metrics.jsonl").read_bytes() == metrics


def test_the_write_check_also_makes_a_real_attempt(tmp_path, monkeypatch):
    """Root passes ``os.access`` on a read-only file system: the real attempt decides."""

    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(space.tempfile, "mkstemp", refused)
    with pytest.raises(space.UnwritableError, match="read-only file system"):
        space.check_writable(tmp_path / "new" / "folder", "run directory")
    monkeypatch.undo()
    space.check_writable(tmp_path / "new" / "folder", "run directory")
    assert list(tmp_path.iterdir()) == []  # the probe file is removed again


# -- item 9: sizes that cannot fit ----------------------------------------------------------
def test_a_dataset_too_large_for_the_disk_is_refused_with_the_estimate(workdir: Path):
    result = run_cli("generate", "problem.nx=100000000", cwd=workdir)
    assert_one_line_error(result, 1, "needs about", "TiB", "free there")
    assert not (workdir / "datasets").exists() and not (workdir / "outputs").exists()


def test_a_batch_too_large_for_memory_is_refused_with_the_estimate(
    workdir, monkeypatch, capsys, one_thread
):
    monkeypatch.setattr(space, "available_memory", lambda: 2**20)  # 1 MiB
    result = run_here(monkeypatch, capsys, "generate", "debug=smoke", "problem.nx=4096")
    assert_one_line_error(result, 1, "of memory", "only 1.0 MiB is available")
    assert not (workdir / "datasets").exists()


@pytest.mark.parametrize("args", [[], ["debug=smoke"], ["experiment=burgers_sines"]])
def test_the_estimates_of_ordinary_runs_pass(args, workdir):
    from pbdl_cli.runner import compose
    from pbdl_cli.stages.generate import Generate
    from pbdl_cli.stages.generate_space import batch_memory, check_generate_space, dataset_bytes

    settings = Generate().build(compose("generate", args))
    check_generate_space(settings)  # raises where they would not fit
    frames = settings.problem.num_steps + 1
    n = settings.config.data.n_train + settings.config.data.n_val + settings.config.data.n_test
    assert dataset_bytes(settings) == n * frames * settings.problem.state_shape[-1] * 4
    device, host = batch_memory(settings)
    assert host == min(settings.config.data.batch_size, settings.config.data.n_train) * (
        frames * settings.problem.state_shape[-1] * 4
    )
    assert device > host  # the rollout in float32 and the solver's work space


# -- a real small tmpfs (root only) ---------------------------------------------------------
@contextlib.contextmanager
def mounted(where: Path, *options: str) -> Iterator[None]:
    """A tmpfs at ``where`` mounted with ``options`` (skips the test where that fails)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the injected faults above cover the rest)")
    opts = ",".join(options) or "defaults"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, f"pbdl-test-{uuid.uuid4().hex[:8]}", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_the_issue_case_in_a_2_mib_tmpfs_is_refused_before_it_simulates(tmp_path: Path):
    full = tmp_path / "full"
    with mounted(full, "size=2m"):
        args = ["generate", "problem=burgers", "problem.nx=2048", "data.n_train=512"]
        result = run_cli(*args, cwd=full)
        assert_one_line_error(result, 1, "needs about 429.2 MiB", "only 2.0 MiB is free")
        assert list(full.iterdir()) == []


#: runs pbdl with the disk check before the run disabled, as if another process filled
#: the disk after it: the writes themselves then meet the full disk
_NO_DISK_CHECK = """
import pbdl_cli.stages.generate_space as checks
checks.check_disk = lambda *args, **kwargs: None
"""


def test_a_real_full_disk_while_writing_ends_in_one_line_without_a_crash(tmp_path: Path):
    full = tmp_path / "full"
    with mounted(full, "size=256k"):
        root = full / "datasets"
        args = ["generate", "debug=smoke", "problem.nx=512", "data.n_train=4", "data.name=d"]
        command = [sys.executable, "-c", _NO_DISK_CHECK + _CHECKED_MAIN, str(REPO), *args]
        result = subprocess.run(
            [*command, f"data.root={root}", "hydra.run.dir=run"],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode != -11, "segmentation fault"
        assert_one_line_error(result, 1, "no space left on the device", "train.h5", "free there")
        assert leftovers(full) == [] and not (root / "burgers" / "d").exists()


def test_a_real_full_disk_while_saving_a_checkpoint(tmp_path: Path):
    from pbdl_cli.training.checkpoint import load_checkpoint, save_checkpoint

    full = tmp_path / "full"
    with mounted(full, "size=512k"):
        last = full / "checkpoints" / "last.pt"
        save_checkpoint(last, {"model": {"w": torch.zeros(1000)}, "step": 1})
        with pytest.raises(space.NoSpaceError, match=r"while writing .*last\.pt.*needs about"):
            save_checkpoint(last, {"model": {"w": torch.zeros(200_000)}, "step": 2})
        assert load_checkpoint(last)["step"] == 1
        assert leftovers(full) == []


def test_read_only_mounts_are_refused_before_anything_runs(tmp_path: Path):
    ro = tmp_path / "ro"
    trained = run_cli("train", "debug=smoke", "hydra.run.dir=run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    with mounted(ro, "ro", "size=64k"):
        for args, cwd, code, needle in [
            (["generate", f"data.root={ro}"], tmp_path, 2, "read-only file system"),
            (["generate", f"hydra.run.dir={ro}/run"], tmp_path, 2, f"run directory {ro}/run"),
            (["train"], ro, 2, "cannot write the run directory outputs/train"),
        ]:
            result = run_cli(*args, "debug=smoke", cwd=cwd)
            assert_one_line_error(result, code, needle)
        checkpoints = tmp_path / "run" / "checkpoints"
        bind = subprocess.run(["mount", "--bind", str(checkpoints), str(checkpoints)])
        if bind.returncode:
            pytest.skip("cannot bind-mount the checkpoints folder")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(checkpoints)], check=True)
            saved = (checkpoints / "last.pt").read_bytes()
            resumed = run_cli(
                "train", "debug=smoke", "resume=true", "hydra.run.dir=run", cwd=tmp_path
            )
            assert_one_line_error(resumed, 2, "checkpoint folder", "read-only file system")
            assert (checkpoints / "last.pt").read_bytes() == saved
        finally:
            subprocess.run(["umount", "-l", str(checkpoints)], check=False)
