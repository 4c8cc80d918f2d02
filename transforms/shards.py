"""Which shard of a minute a reading belongs to (``KIDJAMO_SHARDS``; README, "Scaling out").

A reading goes to the shard of its device's **registered patient** (the device itself when the
registry does not know it), by a stable hash. That one key keeps every per-batch computation
whole inside one shard:

- deduplication on (device_id, measured_at) and device flooding need all of a *device's* readings:
  a device has one registered patient, so all its readings, good or quarantined, share a shard;
- the per-patient rules (pain window, one open alert per patient and rule, baselines) and gold's
  patient-minute features need all of a *patient's* readings: every device of a patient hashes to
  the patient's shard. The payload's own ``patient_id`` is not the key: a reading claiming another
  patient (``device_patient_mismatch``) would leave its device's shard and split the flooding count.

Routing happens once per reading, in the to_bronze task that parses its raw file, which writes it
to exactly one destination file: a reading is never lost or doubled, whatever the registry does
meanwhile. A record without a device id (not JSON, no ``device_id``) stays in the shard that parsed it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def shard_of_devices(device_ids: pa.Array | pa.ChunkedArray | pd.Series, registry: pd.DataFrame, shards: int,
                     *, unrouted: int) -> np.ndarray:
    """The shard (0..shards-1) of each reading by its device id, vectorised; ``unrouted`` for a null device id."""
    devices = device_ids.to_pandas() if isinstance(device_ids, (pa.Array, pa.ChunkedArray)) else device_ids
    devices = pd.Series(devices, dtype=object).reset_index(drop=True)
    if shards == 1 or devices.empty:
        return np.zeros(len(devices), dtype=np.int64)
    position = pd.Index(registry["device_id"]).get_indexer(devices)
    registered = position >= 0
    keys = devices.to_numpy(dtype=object, na_value=None).copy()
    keys[registered] = registry["patient_id"].to_numpy(dtype=object)[position[registered]]
    missing = pd.isna(keys)
    keys[missing] = ""
    # pandas' hash_array (SipHash with a fixed key) is the same in every process, unlike hash().
    shard = (pd.util.hash_array(keys, categorize=True) % np.uint64(shards)).astype(np.int64)
    shard[missing] = unrouted
    return shard
