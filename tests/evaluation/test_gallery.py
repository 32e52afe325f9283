"""The gallery of 2D predictions (pbdl_cli/evaluation/gallery.py): frames, animations,
derived vorticity, atomic writes and the gallery options of pbdl evaluate."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import animation
from omegaconf import OmegaConf
from PIL import Image

from pbdl_cli.config import to_schema
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation import gallery, run_figures
from pbdl_cli.evaluation.gallery import AnimationFormat, GalleryConfig, check_gallery_fields
from pbdl_cli.stages.evaluate import EvaluateConfig

T, X, Y = 12, 16, 20
FIELDS = ("u", "v", "marker")


def blob_flow() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A Gaussian blob carried once round a circle, with a swirl around it:
    ([T, C, X, Y] values, [T] times, coords)."""
    t = np.linspace(0.0, 1.0, T)
    x = (np.arange(X) + 0.5) / X
    y = (np.arange(Y) + 0.5) / Y * 1.25  # non-square cells and domain
    cx = 0.5 + 0.25 * np.cos(2 * np.pi * t)[:, None, None]
    cy = 0.625 + 0.25 * np.sin(2 * np.pi * t)[:, None, None]
    dx, dy = x[None, :, None] - cx, y[None, None, :] - cy
    marker = np.exp(-(dx**2 + dy**2) / 0.02)
    values = np.stack([-dy * marker, dx * marker, marker], axis=1)
    return values, t, {"x": x, "y": y}


def gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        assert image.format == "GIF"
        return image.n_frames


def assert_png(path: Path) -> tuple[int, int]:
    """``path`` decodes as a PNG with some contrast; returns its (width, height)."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 5  # not a blank canvas
    return pixels.shape[1], pixels.shape[0]


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


def test_gallery_of_every_field_with_a_reference(tmp_path: Path) -> None:
    values, t, coords = blob_flow()
    options = GalleryConfig(max_frames=5, panels=3, fields=["marker", "vorticity"])
    written = run_figures.plot_prediction(
        tmp_path, values, values * 1.05, t, coords, fields=FIELDS, gallery=options
    )
    names = ["frames_marker.png", "anim_marker.gif", "frames_vorticity.png", "anim_vorticity.gif"]
    assert [p.name for p in written] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    height = assert_png(tmp_path / "frames_marker.png")[1]
    for name in ("anim_marker.gif", "anim_vorticity.gif"):
        assert gif_frames(tmp_path / name) == 5  # 12 frames subsampled to max_frames
    assert no_temporaries(tmp_path)

    # all fields (and vorticity) by default; animate=false: frames only
    written = gallery.write_gallery(
        tmp_path / "all", values, None, t, coords, fields=FIELDS,
        options=GalleryConfig(animate=False, panels=2),
    )  # fmt: skip
    assert [p.name for p in written] == [f"frames_{f}.png" for f in (*FIELDS, "vorticity")]
    one_row = assert_png(tmp_path / "all" / "frames_marker.png")
    assert one_row[1] < height  # no reference: one row instead of three
    assert no_temporaries(tmp_path / "all")


def test_animation_without_reference_keeps_every_frame_below_the_cap(tmp_path: Path) -> None:
    values, t, coords = blob_flow()
    path = gallery.animate(
        tmp_path / "anim_u.gif", values[:, 0], None, t, coords["x"], coords["y"],
        field="u", max_frames=50, dpi=30,
    )  # fmt: skip
    assert gif_frames(path) == T
    with Image.open(path) as image:  # frames differ: the blob moves
        first = np.asarray(image.convert("RGB"), dtype=float)
        image.seek(T // 2)
        middle = np.asarray(image.convert("RGB"), dtype=float)
    assert np.abs(first - middle).mean() > 0.5
    assert no_temporaries(tmp_path)


def test_a_failing_writer_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values, t, coords = blob_flow()

    def fail(self: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(animation.PillowWriter, "finish", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        gallery.animate(
            tmp_path / "anim_u.gif", values[:, 0], None, t, coords["x"], coords["y"],
            field="u", max_frames=2, dpi=20,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_animation_format_falls_back_to_gif(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    assert gallery.animation_format("auto") == "gif"
    assert gallery.animation_format(AnimationFormat.gif) == "gif"
    with caplog.at_level(logging.WARNING, logger="pbdl.evaluate"):
        assert gallery.animation_format("mp4") == "gif"
    assert "ffmpeg" in caplog.text
    monkeypatch.setattr(animation.writers, "is_available", lambda name: name == "ffmpeg")
    assert gallery.animation_format("auto") == gallery.animation_format("mp4") == "mp4"
    assert gallery.animation_format("gif") == "gif"


def test_vorticity_of_a_solid_rotation() -> None:
    x, y = np.linspace(-1, 1, 9), np.linspace(-2, 2, 13)
    u = -np.broadcast_to(y[None, :], (9, 13)) * 0.5  # u = -w y, v = w x: vorticity 2 w
    v = np.broadcast_to(x[:, None], (9, 13)) * 0.5
    values = np.stack([v, u, np.zeros_like(u)])[None].repeat(2, axis=0)  # channel order v, u
    derived = gallery.derived_fields(values, ("v", "u", "p"), x, y)
    assert derived["vorticity"].shape == (2, 9, 13)
    assert np.allclose(derived["vorticity"], 1.0)
    assert gallery.derived_fields(values, ("a", "u", "p"), x, y) == {}


def test_gallery_options(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"run": "r", "gallery": {"animate": False, "format": "gif"}})
    config = to_schema(cfg, EvaluateConfig, path="")
    assert config.gallery.animate is False and config.gallery.format is AnimationFormat.gif
    assert config.gallery.max_frames == 50 and config.gallery.fields is None
    for bad in ({"format": "avi"}, {"trajectory": -1}, {"max_frames": 0}, {"colour": 1}):
        with pytest.raises(PbdlError, match=r"gallery|format|trajectory|max_frames|colour"):
            to_schema(OmegaConf.create({"run": "r", "gallery": bad}), EvaluateConfig, path="")
    check_gallery_fields(["marker", "vorticity"], FIELDS, "flow")
    with pytest.raises(PbdlError, match=r"gallery\.fields: pressure"):
        check_gallery_fields(["u", "pressure"], FIELDS, "flow")


def test_evaluate_draws_the_chosen_trajectory(tmp_path: Path) -> None:
    values, t, coords = blob_flow()
    batch = torch.from_numpy(np.stack([np.zeros_like(values), values]))  # [B=2, T, C, X, Y]
    options = GalleryConfig(trajectory=1, animate=False, panels=2, fields=["marker"])
    tensors = {k: torch.from_numpy(v) for k, v in coords.items()}
    written = run_figures.evaluation_figures(
        tmp_path / "eval", batch, None, torch.from_numpy(t), tensors, None,
        fields=FIELDS, gallery=options, records=[],
    )  # fmt: skip
    assert [p.name for p in written] == ["frames_marker.png"]  # no metrics.jsonl: no loss.png
    direct = gallery.plot_frames(
        tmp_path / "direct.png", values[:, 2], None, t, coords["x"], coords["y"],
        field="marker", panels=2,
    )  # fmt: skip
    with Image.open(written[0]) as shown, Image.open(direct) as expected:
        assert np.array_equal(np.asarray(shown), np.asarray(expected))
