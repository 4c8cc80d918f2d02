"""The registry import validates every line, upserts idempotently and is audited."""

from datetime import date

import psycopg
import pytest

from warehouse.support import REGISTRY_LINES, write_registry
from transforms.registry import RegistryError, import_registry, load_registry, read_registry_csv


def test_import_inserts_patients_and_devices(fresh_database_url, registry_csv):
    counts = import_registry(registry_csv, fresh_database_url, pseudonym_key="k")
    assert counts["lines"] == 4
    assert counts["patients_inserted"] == 3
    assert counts["devices_inserted"] == 4


def test_importing_the_same_file_twice_changes_nothing(fresh_database_url, registry_csv):
    import_registry(registry_csv, fresh_database_url, pseudonym_key="k")
    with psycopg.connect(fresh_database_url) as connection:
        audit_rows_before = connection.execute("SELECT count(*) FROM kidjamo.audit_log WHERE table_name IS NOT NULL").fetchone()[0]
    counts = import_registry(registry_csv, fresh_database_url, pseudonym_key="k")
    assert (counts["patients_inserted"], counts["patients_updated"], counts["devices_inserted"], counts["devices_updated"]) == (0, 0, 0, 0)
    with psycopg.connect(fresh_database_url) as connection:
        audit_rows_after = connection.execute("SELECT count(*) FROM kidjamo.audit_log WHERE table_name IS NOT NULL").fetchone()[0]
    assert audit_rows_after == audit_rows_before


def test_a_changed_line_updates_the_patient_and_audits_before_and_after(fresh_database_url, tmp_path):
    import_registry(write_registry(tmp_path / "a.csv", REGISTRY_LINES), fresh_database_url, pseudonym_key="k")
    changed = [REGISTRY_LINES[0].replace("team-a", "team-c"), *REGISTRY_LINES[1:]]
    counts = import_registry(write_registry(tmp_path / "b.csv", changed), fresh_database_url, pseudonym_key="k")
    assert counts["patients_updated"] == 1
    with psycopg.connect(fresh_database_url) as connection:
        before, after = connection.execute(
            "SELECT before ->> 'care_team', after ->> 'care_team' FROM kidjamo.audit_log"
            " WHERE table_name = 'kidjamo.patients' AND action = 'UPDATE' AND patient_id = 'patient-001'"
        ).fetchone()
    assert (before, after) == ("team-a", "team-c")


def test_import_is_recorded_as_an_audit_event(fresh_database_url, registry_csv):
    import_registry(registry_csv, fresh_database_url, pseudonym_key="k")
    with psycopg.connect(fresh_database_url) as connection:
        detail = connection.execute("SELECT detail FROM kidjamo.audit_log WHERE action = 'registry_import'").fetchone()[0]
    assert detail["file"] == str(registry_csv) and detail["lines"] == 4


def test_an_invalid_line_names_line_column_expected_and_got(tmp_path):
    path = write_registry(tmp_path / "bad.csv", [REGISTRY_LINES[0], "patient-009,2012-02-30,F,HbSS,device-009,team-a,"])
    with pytest.raises(RegistryError) as error:
        read_registry_csv(path)
    assert "line 3, column birth_date: expected a date YYYY-MM-DD, got '2012-02-30'" in str(error.value)


@pytest.mark.parametrize(
    "lines, message",
    [
        (["patient-009,2012-02-01,W,HbSS,device-009,team-a,"], "line 2, column sex: expected one of F, M, X, got 'W'"),
        (["patient-009,2012-02-01,F,HbAA,device-009,team-a,"], "line 2, column genotype: expected one of"),
        (["patient-009,2012-02-01,F,HbSS,device-009,team-a,101"], "line 2, column baseline_spo2: expected empty or a number from 50 to 100, got '101'"),
        ([",2012-02-01,F,HbSS,device-009,team-a,"], "line 2, column patient_id: expected a non-empty identifier, got ''"),
        (["patient-009,2099-02-01,F,HbSS,device-009,team-a,"], "line 2, column birth_date: expected a date after 1900-01-01 and not after 2026-11-27"),
        # Lines that contradict each other: a device listed twice, the lines of one patient disagreeing.
        ([REGISTRY_LINES[0], REGISTRY_LINES[0].replace("patient-001", "patient-005")],
         "line 3, column device_id: expected each device once, got 'device-001' again (first on line 2)"),
        ([REGISTRY_LINES[1], REGISTRY_LINES[2].replace("HbSC", "HbSS")],
         "line 3, column genotype: expected 'HbSC' as on the first line of patient 'patient-002', got 'HbSS'"),
    ],
)
def test_each_invalid_value_is_reported(tmp_path, lines, message):
    path = write_registry(tmp_path / "bad.csv", lines)
    with pytest.raises(RegistryError) as error:
        read_registry_csv(path, today=date(2026, 11, 27))
    assert message in str(error.value)


def test_a_missing_column_is_reported_from_the_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("patient_id,birth_date,sex\np,2000-01-01,F\n")
    with pytest.raises(RegistryError, match="missing genotype, device_id, care_team, baseline_spo2"):
        read_registry_csv(path)


def test_an_invalid_file_writes_nothing(fresh_database_url, tmp_path):
    path = write_registry(tmp_path / "bad.csv", [REGISTRY_LINES[0], "patient-009,2012-02-01,W,HbSS,device-009,team-a,"])
    with pytest.raises(RegistryError):
        import_registry(path, fresh_database_url, pseudonym_key="k")
    with psycopg.connect(fresh_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM kidjamo.patients").fetchone()[0] == 0


def test_load_registry_returns_one_typed_row_per_device(registered_url):
    registry = load_registry(registered_url)
    assert list(registry.columns) == ["device_id", "patient_id", "birth_date", "sex", "genotype", "care_team", "baseline_spo2", "device_active"]
    assert list(registry["device_id"]) == ["device-001", "device-002", "device-003", "device-004"]
    assert str(registry["birth_date"].dtype) == "datetime64[ns]"
    first = registry.iloc[0]
    assert (first["patient_id"], first["birth_date"].date(), first["baseline_spo2"], bool(first["device_active"])) == ("patient-001", date(2015, 3, 2), 96.0, True)
    assert registry["care_team"].isna().tolist() == [False, False, False, True]
    assert registry["baseline_spo2"].isna().tolist() == [False, True, True, False]


@pytest.mark.parametrize(
    "spelling, stored",
    [("HbSS", "HbSS"), ("SS", "HbSS"), ("Hb SS", "HbSS"), ("hbss", "HbSS"), ("Hb-SS", "HbSS"),
     ("SC", "HbSC"), ("Hb SC", "HbSC"), ("Sβ0", "HbSB0"), ("SB0", "HbSB0"), ("HbSβ0", "HbSB0"), ("Sβ°", "HbSB0"),
     ("HbS/β0", "HbSB0"), ("S beta 0", "HbSB0"), ("Sβ+", "HbSB+"), ("SB+", "HbSB+"), ("HbSβ+", "HbSB+"),
     ("Hb S beta+", "HbSB+"), ("SD-Punjab", "HbSD"), ("HbSO-Arab", "HbSO"), ("SE", "HbSE"), ("other", "other")],
)
def test_genotype_spellings_clinicians_use_are_normalised(tmp_path, spelling, stored):
    path = write_registry(tmp_path / "spellings.csv", [f"patient-009,2012-02-01,F,{spelling},device-009,team-a,"])
    assert read_registry_csv(path)["genotype"].tolist() == [stored]


@pytest.mark.parametrize("spelling", ["HbAA", "Sβ", "SBeta", "S", "SSC"])
def test_an_unknown_or_ambiguous_genotype_names_line_and_column(tmp_path, spelling):
    path = write_registry(tmp_path / "bad.csv", [REGISTRY_LINES[0], f"patient-009,2012-02-01,F,{spelling},device-009,team-a,"])
    with pytest.raises(RegistryError, match=f"line 3, column genotype: expected one of HbSS .*got '{spelling}'"):
        read_registry_csv(path)


def test_two_spellings_of_one_genotype_agree_across_a_patients_lines(tmp_path):
    first = "patient-009,2012-02-01,F,Hb SS,device-009,team-a,"
    path = write_registry(tmp_path / "two.csv", [first, first.replace("Hb SS", "SS").replace("device-009", "device-010")])
    assert read_registry_csv(path)["genotype"].tolist() == ["HbSS", "HbSS"]
