"""The gate runner: validates a layer's batch with its Great Expectations suite.

Each expectation carries ``meta["level"]``:
- ``row``: failing rows are routed to quarantine (their raw file and record index come back in
  ``GateResult.rejected``), the batch goes on;
- ``batch``: a failure (schema drift, a broken invariant) stops the task with a message saying what
  was expected and what was found.
A flood of bad readings is judged per device (:func:`flooding_devices`): one broken or hostile
producer must not stop everybody's minute, so its readings are set aside and the device reported,
and the batch fails only for what means it cannot be trusted (schema drift, broken lineage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd
import pyarrow as pa

from expectations import configure
from kidjamo.jsonable import jsonable

ROW_ID_COLUMNS = ["raw_file", "record_index"]


class GateFailed(RuntimeError):
    """A batch-level expectation failed: the task must stop."""


@dataclass
class GateResult:
    suite: str
    success: bool
    evaluated_rows: int
    rejected: pa.Table  # raw_file, record_index, detail of the rows that failed row-level expectations
    results: list[dict] = field(default_factory=list)
    statistics: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    document: dict | None = None  # the full GX validation result, for Data Docs

    def counts(self) -> dict:
        return {"suite": self.suite, "success": self.success, "evaluated_rows": self.evaluated_rows,
                "rejected_rows": self.rejected.num_rows, **{f"expectations_{k}": v for k, v in self.statistics.items()
                                                            if k in ("evaluated_expectations", "unsuccessful_expectations")}}


REJECTED_SCHEMA = pa.schema([("raw_file", pa.string()), ("record_index", pa.int32()), ("detail", pa.string())])


@lru_cache(maxsize=1)
def _context():
    configure()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def warm_up() -> None:
    """Import Great Expectations and build its context now (a process that forks tasks calls it once)."""
    _context()


@lru_cache(maxsize=8)
def _batch_definition(asset_name: str):
    context = _context()
    source = context.data_sources.add_or_update_pandas(f"kidjamo_{asset_name}")
    asset = source.add_dataframe_asset(asset_name)
    return asset.add_batch_definition_whole_dataframe(f"{asset_name}_batch")


def _describe(expectation_config) -> str:
    kwargs = {k: v for k, v in expectation_config.kwargs.items() if k not in ("batch_id", "result_format")}
    return f"{expectation_config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def run_gate(suite, frame: pd.DataFrame) -> GateResult:
    """Validate ``frame`` with ``suite``: row-level failures in ``rejected``, batch-level ones in ``failures``."""
    if frame.empty:
        return GateResult(suite.name, True, 0, REJECTED_SCHEMA.empty_table(), statistics={"evaluated_expectations": 0})
    batch = _batch_definition(suite.name).get_batch(batch_parameters={"dataframe": frame})
    validation = batch.validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ROW_ID_COLUMNS,
                       "return_unexpected_index_query": False, "partial_unexpected_count": 5},
    )
    rejected: dict[tuple[str, int], str] = {}
    failures: list[str] = []
    results: list[dict] = []
    for outcome in validation.results:
        config = outcome.expectation_config
        level = (config.meta or {}).get("level", "batch")
        result = outcome.result or {}
        column = config.kwargs.get("column")
        summary = {"expectation": config.type, "column": column, "level": level, "success": bool(outcome.success),
                   "unexpected_count": int(result.get("unexpected_count") or 0),
                   "observed_value": jsonable(result.get("observed_value")),
                   "partial_unexpected_list": jsonable(result.get("partial_unexpected_list", [])[:5])}
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            summary["exception"] = outcome.exception_info.get("exception_message")
            failures.append(f"{_describe(config)} could not run: {summary['exception']}")
        results.append(summary)
        if outcome.success:
            continue
        if level == "row":
            for row in result.get("unexpected_index_list") or []:
                key = (row["raw_file"], int(row["record_index"]))
                value = jsonable(row.get(column)) if column else None
                rejected.setdefault(key, f"{suite.name} gate: {column}={value!r} fails {_describe(config)}")
        else:
            failures.append(f"{_describe(config)}: expected it to hold, found {summary['observed_value']!r}"
                            f" ({summary['unexpected_count']} unexpected)")
    rejected_table = pa.table(
        {"raw_file": [k[0] for k in rejected], "record_index": [k[1] for k in rejected], "detail": list(rejected.values())},
        schema=REJECTED_SCHEMA,
    )
    return GateResult(suite.name, not failures, len(frame), rejected_table, results, dict(validation.statistics),
                      failures, validation.to_json_dict())


def flooding_devices(device_ids: pd.Series, is_bad: pd.Series, reason: pd.Series, *, max_bad_share: float,
                     min_bad: int) -> pd.DataFrame:
    """Devices whose share of bad readings in the batch exceeds ``max_bad_share``, with at least ``min_bad`` bad ones.

    The three series are aligned, one entry per reading of the batch (good and bad); readings with no
    device (not even parseable) belong to no device and are not judged. Returns one row per flooding
    device: device_id, readings, bad_readings, share, reasons ({reason code: count}).
    """
    frame = pd.DataFrame({"device_id": device_ids.to_numpy(dtype=object), "bad": is_bad.to_numpy(dtype=bool),
                          "reason": reason.to_numpy(dtype=object)}).dropna(subset=["device_id"])
    per_device = frame.groupby("device_id", sort=True)["bad"].agg(readings="size", bad_readings="sum")
    per_device["share"] = per_device["bad_readings"] / per_device["readings"]
    flooding = per_device[(per_device["share"] > max_bad_share) & (per_device["bad_readings"] >= min_bad)].reset_index()
    bad_reasons = frame[frame["bad"] & frame["device_id"].isin(flooding["device_id"])].groupby(["device_id", "reason"]).size()
    flooding["reasons"] = [{str(code): int(n) for code, n in bad_reasons.get(device, pd.Series(dtype=int)).items()}
                           for device in flooding["device_id"]]
    return flooding


def raise_on_failure(result: GateResult) -> None:
    if result.failures:
        raise GateFailed(f"{result.suite} gate failed: " + "; ".join(result.failures))
