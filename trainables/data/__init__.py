"""Dataset registry: importing this package registers every data set."""

from trainables.data import curved, digits, external, shapes, synthetic  # noqa: F401  (registration)
from trainables.data.base import DATASETS, DataBundle, DataUnavailableError


def load_dataset(name: str, seed: int = 0, data_root: str = "") -> DataBundle:
    """The named data set; unknown names raise with the known ones listed."""
    return DATASETS[name](seed=seed, data_root=data_root)


__all__ = ["DATASETS", "DataBundle", "DataUnavailableError", "load_dataset"]
