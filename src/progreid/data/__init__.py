"""progreid.data: dataset readers, the PK sampler, image loading and batch transforms."""

from progreid.data.registry import (
    DATASET_NAMES,
    build_dataset,
    build_run_dataset,
    datasets_table,
    detect_dataset,
)
from progreid.data.sample import DatasetError, ReIDDataset, Sample, relabel

__all__ = ["DATASET_NAMES", "DatasetError", "ReIDDataset", "Sample", "build_dataset",
           "build_run_dataset", "datasets_table", "detect_dataset", "relabel"]
