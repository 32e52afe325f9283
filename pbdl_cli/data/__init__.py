"""Dataset files: the HDF5 layout (schema version 1), its writer, reader and summary;
training windows, normalization statistics and a seeded loader."""

from pbdl_cli.data.hdf5 import (
    SCHEMA_VERSION,
    DatasetError,
    DatasetInfo,
    TrajectoryWriter,
    compute_checksum,
    open_dataset,
    print_info,
    read_info,
    read_trajectories,
    render_info,
    verify_checksum,
)

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "DatasetInfo",
    "Normalization",
    "TrajectoryWriter",
    "WindowBatchSampler",
    "WindowDataset",
    "compute_checksum",
    "compute_normalization",
    "make_loader",
    "open_dataset",
    "print_info",
    "read_info",
    "read_trajectories",
    "render_info",
    "verify_checksum",
    "windows_per_trajectory",
]

_WINDOWS = {
    "Normalization",
    "WindowBatchSampler",
    "WindowDataset",
    "compute_normalization",
    "make_loader",
    "windows_per_trajectory",
}


def __getattr__(name: str) -> object:
    # windows.py imports torch; loaded on first use so `pbdl info` stays free of torch
    if name in _WINDOWS:
        from pbdl_cli.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
