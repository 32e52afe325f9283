"""Dataset files and training data, one module per concern.

``schema`` (the HDF5 layout, version 1), ``writer`` (atomic streaming writer),
``reader`` (validating reader, :class:`~pbdl_cli.data.reader.DatasetFile`), ``checksum``,
``summary`` (what ``pbdl info`` shows); ``layout`` (channels and params of a split),
``windows`` (training windows), ``normalization`` and ``loader`` (seeded batches). Only the
last three import torch.
"""
