"""Dataset files: the HDF5 layout (schema version 1), its writer, reader and summary."""

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
    "TrajectoryWriter",
    "compute_checksum",
    "open_dataset",
    "print_info",
    "read_info",
    "read_trajectories",
    "render_info",
    "verify_checksum",
]
