"""The exception report: files and their order, summary figures, workbook layout, formula injection,
and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from scrubber.report import build_summary, write_report
from scrubber.report import html as report_html
from scrubber.report import xlsx as report_xlsx
from scrubber.store import LocalStore

INJECTION = '=HYPERLINK("http://x","y")'
PREFIX = "reports/2025-11-07/run-1/"


def _flags_and_lines() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    lines = pd.DataFrame({
        "line_uid": [0, 1, 2, 3, 4],
        "claim_id": ["C1", "C1", "C2", "C3", "C4"],
        "line_number": [1, 2, 1, 1, 1],
        "patient_id": pd.array([INJECTION, INJECTION, "P2", "<script>alert(1)</script>", "P4"], dtype="str"),
        "service_date": pd.to_datetime(["2025-11-03"] * 5),
        "hcpcs": ["20553", "11102", "99213", "27447", "J1000"],
        "expected_allowed": [58.55, 95.75, 88.95, 1257.63, np.nan],
        "expected_allowed_cents": pd.array([5855, 9575, 8895, 125763, pd.NA], dtype="Int64"),
        "rvu_release": pd.Categorical(["RVU25D"] * 5),
    })
    flags = pd.DataFrame({
        "run_id": "run-1",
        "claim_id": ["C1", "C1", "C2", "C3", "C3", "C1"],
        "line_number": [1, 1, 1, 1, 1, 2],
        "patient_id": pd.array([INJECTION, INJECTION, "P2", "<script>alert(1)</script>",
                                "<script>alert(1)</script>", INJECTION], dtype="str"),
        "rendering_npi": "1234567893",
        "service_date": pd.to_datetime(["2025-11-03"] * 6),
        "hcpcs": ["20553", "20553", "99213", "27447", "27447", "11102"],
        "modifiers": ["", "", "25", "-2+3", "", "@SUM(A1)"],
        "units": [3.0, 3.0, 1.0, 1.0, 1.0, 1.0],
        "place_of_service": ["11", "11", "11", "21", "21", "11"],
        "rule_family": ["units", "bundling", "modifier25", "code_status", "units", "bundling"],
        "rule_id": ["MUE-LINE", "PTP-IND1", "EM-25-NOPROC", "MOD-ASST-NOT-PAID", "MUE-LINE", "PTP-BYPASS"],
        "severity": ["deny", "deny", "review", "deny", "deny", "info"],
        "message": ["Units 3 of 20553 exceed the MUE of 1", "+1 bundled into 11102", "25 without procedure",
                    "Assistant not paid", "Units too high", "Bypassed with 59"],
        "related_claim_id": [None, "C1", None, None, None, "C1"],
        "related_line_number": pd.array([pd.NA, 2, pd.NA, pd.NA, pd.NA, 1], dtype="Int64"),
        "expected_allowed": [58.55, 58.55, 88.95, 1257.63, 1257.63, 95.75],
        "amount_at_risk": [58.55, 58.55, 88.95, 1257.63, 1257.63, 0.0],
        "reference_release": "RVU25D",
        "fix": ["Bill 1 unit", "Add 59 if distinct", "Remove 25", "Remove 80", "Check units", "Document"],
        "carc": ["CO-151", "CO-97", "CO-4", "CO-54", "CO-151", ""],
        "payer": ["medicare", "medicare", "medicare", "acme", "acme", "medicare"],
        "line_uid": [0, 0, 2, 3, 3, 1],
        "source_file": "claims.csv",
        "source_row": [2, 2, 4, 5, 5, 3],
    })
    quarantine = pd.DataFrame({"source_file": ["claims.csv"], "source_row": [7], "field": ["patient_id"],
                               "reason": ["=cmd|' /C calc'!A0 is not a valid NPI"]})
    return flags, lines, quarantine


@pytest.fixture
def report(tmp_path: Path) -> tuple[LocalStore, list[str], dict]:
    flags, lines, quarantine = _flags_and_lines()
    store = LocalStore(tmp_path / "store")
    summary = build_summary(run_id="run-1", run_date="2025-11-07", input_rows=6, lines=lines, flags=flags,
                            quarantine=quarantine, releases={"zip": "ZIP5-2025Q4"},
                            timings={"intake": 0.5, "checks": 1.25})
    keys = write_report(store, PREFIX, flags=flags, lines=lines, quarantine=quarantine, summary=summary)
    return store, keys, summary


def test_files_are_written_with_summary_last(report: tuple[LocalStore, list[str], dict]) -> None:
    store, keys, _ = report
    names = [k.removeprefix(PREFIX) for k in keys]
    assert names == ["flags.parquet", "lines.parquet", "flags.csv", "quarantine.csv", "exceptions.xlsx",
                     "report.html", "summary.json"]
    assert all(store.exists(k) for k in keys)
    flags = store.read_parquet(PREFIX + "flags.parquet")
    assert flags["amount_at_risk"].tolist() == sorted(flags["amount_at_risk"].tolist(), reverse=True)
    assert flags.columns[:4].tolist() == ["run_id", "claim_id", "line_number", "patient_id"]
    assert flags["patient_id"].iloc[-1] == INJECTION            # parquet keeps the raw value
    assert len(store.read_parquet(PREFIX + "lines.parquet")) == 5


def test_summary_counts_reconcile_and_dedupe_dollars(report: tuple[LocalStore, list[str], dict]) -> None:
    store, _, _ = report
    s = json.loads(store.read_text(PREFIX + "summary.json"))
    assert s["run_id"] == "run-1" and s["run_date"] == "2025-11-07"
    c = s["counts"]
    assert (c["input_rows"], c["scrubbed_lines"], c["quarantined_rows"]) == (6, 5, 1)
    assert (c["flags"], c["flagged_lines"], c["clean_lines"]) == (6, 4, 1)
    assert c["flags_by_family"]["units"] == 2 and c["flags_by_family"]["frequency"] == 0
    assert c["flags_by_severity"] == {"deny": 4, "review": 1, "info": 1}
    assert s["reconciliation"] == {"balanced": True, "input_rows": 6, "scrubbed_lines": 5,
                                   "quarantined_rows": 1, "difference": 0}
    d = s["dollars"]
    assert d["expected_allowed_total"] == 1500.88                 # 58.55 + 95.75 + 88.95 + 1257.63
    # each line once at its largest risk: 58.55 (line 0) + 88.95 + 1257.63 + 0
    assert d["amount_at_risk_total"] == 1405.13
    assert d["at_risk_by_family"] == {"units": 1316.18, "code_status": 1257.63, "modifier25": 88.95,
                                      "bundling": 58.55}
    assert d["at_risk_by_severity"]["deny"] == 1316.18
    assert d["at_risk_by_payer"] == {"acme": 1257.63, "medicare": 147.5}
    assert s["reference_releases"] == {"rvu": ["RVU25D"], "zip": ["ZIP5-2025Q4"]}
    assert s["timings"] == {"intake": 0.5, "checks": 1.25}
    assert s["files"][-1] == "summary.json" and "exceptions.xlsx" in s["files"]


def test_unbalanced_run_says_so() -> None:
    flags, lines, quarantine = _flags_and_lines()
    s = build_summary(run_id="r", run_date="2025-11-07", input_rows=9, lines=lines, flags=flags,
                      quarantine=quarantine)
    assert s["reconciliation"]["balanced"] is False and s["reconciliation"]["difference"] == 3


def test_workbook_layout(report: tuple[LocalStore, list[str], dict]) -> None:
    store, _, _ = report
    path = store.local_path(PREFIX + "exceptions.xlsx")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", "Flags", "bundling", "code_status", "modifier25", "units"]
    ws = wb["Flags"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:W7"
    header = [c.value for c in ws[1]]
    assert header[:5] == ["$ at risk", "Severity", "Family", "Rule", "What is wrong"]
    risks = [ws.cell(row=r, column=1).value for r in range(2, 8)]
    assert risks == [1257.63, 1257.63, 88.95, 58.55, 58.55, 0.0]
    assert ws.cell(row=2, column=1).number_format == "#,##0.00"
    assert ws.cell(row=2, column=5).alignment.wrap_text
    assert ws.column_dimensions["E"].width == 60
    dos = ws.cell(row=2, column=header.index("Date of service") + 1).value
    assert dos.date().isoformat() == "2025-11-03"
    assert ws.cell(row=2, column=header.index("Line") + 1).value == 1
    units = wb["units"]
    assert units.max_row == 3 and "Family" not in [c.value for c in units[1]]
    summary = {row[0]: row[1:] for row in wb["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Input rows"][0] == 6
    assert summary["Dollars at risk (each line once)"][0] == 1405.13
    assert summary["Reconciles (input = scrubbed + quarantined)"][0] == "yes"
    assert summary["code_status"][:2] == (1, 1257.63)


def test_formula_injection_is_inert_in_csv_and_xlsx(report: tuple[LocalStore, list[str], dict]) -> None:
    store, _, _ = report
    rows = list(csv.DictReader(io.StringIO(store.read_text(PREFIX + "flags.csv"))))
    by_uid = {r["line_uid"]: r for r in rows}
    assert by_uid["0"]["patient_id"] == "'" + INJECTION
    assert by_uid["1"]["modifiers"] == "'@SUM(A1)"
    assert by_uid["3"]["patient_id"] == "<script>alert(1)</script>"
    assert {r["message"] for r in rows} >= {"'+1 bundled into 11102"}
    assert by_uid["0"]["amount_at_risk"] == "58.55" and by_uid["0"]["service_date"] == "2025-11-03"
    quarantine = list(csv.DictReader(io.StringIO(store.read_text(PREFIX + "quarantine.csv"))))
    assert quarantine[0]["reason"].startswith("'=cmd|")

    path = store.local_path(PREFIX + "exceptions.xlsx")
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in zf.read(name) and b"<f " not in zf.read(name)
    wb = openpyxl.load_workbook(path)
    ws = wb["Flags"]
    header = [c.value for c in ws[1]]
    patient = [ws.cell(row=r, column=header.index("Patient") + 1) for r in range(2, 8)]
    injected = [c for c in patient if c.value and "HYPERLINK" in c.value]
    assert injected and all(c.data_type == "s" and c.value == "'" + INJECTION for c in injected)
    mods = {ws.cell(row=r, column=header.index("Modifiers") + 1).value for r in range(2, 8)}
    assert {"'@SUM(A1)", "'-2+3", "25"} <= mods
    assert ws.cell(row=2, column=1).data_type == "n"              # numbers stay numbers


def test_rule_texts_as_categoricals_write_the_same_report(tmp_path: Path) -> None:
    """A run hands the writers its flags with the rule texts (and other repeating text) as categoricals;
    every file must read exactly as from plain text, formula-looking texts defused in the dictionaries."""
    flags, lines, quarantine = _flags_and_lines()
    coded = flags.copy()
    for col in ("run_id", "modifiers", "rule_family", "rule_id", "severity", "message", "fix", "carc", "payer"):
        coded[col] = coded[col].astype("category")
    summary = build_summary(run_id="run-1", run_date="2025-11-07", input_rows=6, lines=lines, flags=flags,
                            quarantine=quarantine, timings={"intake": 0.5})
    stores = {}
    for name, frame in (("text", flags), ("coded", coded)):
        stores[name] = LocalStore(tmp_path / name)
        write_report(stores[name], PREFIX, flags=frame, lines=lines, quarantine=quarantine, summary=summary)
    text, coded_store = stores["text"], stores["coded"]
    assert coded_store.read_text(PREFIX + "flags.csv") == text.read_text(PREFIX + "flags.csv")
    assert "'+1 bundled into 11102" in coded_store.read_text(PREFIX + "flags.csv")
    pd.testing.assert_frame_equal(coded_store.read_parquet(PREFIX + "flags.parquet"),
                                  text.read_parquet(PREFIX + "flags.parquet"))
    assert coded_store.read_text(PREFIX + "report.html") == text.read_text(PREFIX + "report.html")
    books = [openpyxl.load_workbook(s.local_path(PREFIX + "exceptions.xlsx")) for s in (text, coded_store)]
    assert books[0].sheetnames == books[1].sheetnames
    def cells(book: openpyxl.Workbook, sheet: str) -> list[list[tuple[object, str]]]:
        return [[(c.value, c.data_type) for c in row] for row in book[sheet].iter_rows()]

    for sheet in books[0].sheetnames:
        assert cells(books[1], sheet) == cells(books[0], sheet), sheet


def _as_text(value: object) -> str:
    return "" if value is None else str(value)


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")
def test_workbook_reads_the_same_in_libreoffice(report: tuple[LocalStore, list[str], dict], tmp_path: Path) -> None:
    """Data cells carry no cell reference (each is the next column; an empty one is ``<c/>``): a real
    spreadsheet application puts every value in the column openpyxl does, gaps included."""
    store, _, _ = report
    path = store.local_path(PREFIX + "exceptions.xlsx")
    with zipfile.ZipFile(path) as zf:
        sheet = zf.read("xl/worksheets/sheet2.xml").decode()
    assert '<row r="2">' in sheet and ' r="A2"' not in sheet and "<c/>" in sheet
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path}/profile", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
                    "--outdir", str(tmp_path), str(path)], check=True, timeout=300, capture_output=True)
    book = openpyxl.load_workbook(path)
    for name in ("Flags", "units"):
        with open(tmp_path / f"exceptions-{name}.csv", encoding="utf-8", newline="") as f:
            seen = list(csv.reader(f))
        ws = book[name]
        header = [c.value for c in ws[1]]
        assert seen[0] == header and len(seen) == ws.max_row
        text_columns = [i for i, h in enumerate(header)
                        if h in ("Severity", "Rule", "What is wrong", "Claim", "Patient", "Modifiers", "Related claim",
                                 "Expected CARC", "Source file")]
        for r, row in enumerate(ws.iter_rows(min_row=2, values_only=True), start=1):
            assert [seen[r][i] for i in text_columns] == [_as_text(row[i]) for i in text_columns]
        related = header.index("Related claim")
        assert {row[related] for row in seen[1:]} >= {"", "C1"} or name == "units"   # gaps keep their place
    with open(tmp_path / "exceptions-Summary.csv", encoding="utf-8", newline="") as f:
        summary = list(csv.reader(f))   # its text is inline (not in the shared-string table)
    texts = [(r, c, v) for r, row in enumerate(book["Summary"].iter_rows(values_only=True))
             for c, v in enumerate(row) if isinstance(v, str)]
    assert len(texts) > 20 and all(summary[r][c] == v for r, c, v in texts)


def test_neutralise_keeps_plain_numbers() -> None:
    assert report_xlsx.neutralise_text(["-5", "+1.5", "-2+3", "=1", "\t=1", "@x", "abc", "1e5"]) == \
        ["-5", "+1.5", "'-2+3", "'=1", "'\t=1", "'@x", "abc", "1e5"]


def test_xlsx_text_is_escaped_and_within_excel_limits() -> None:
    text = pd.Series(["a < b & c > d", "bell\x07 ctrl", "x" * 40_000, None, "plain"], dtype="str")
    sheet = report_xlsx.TableSheet("Odd text", [report_xlsx.Column("Text", text, "wrap", 30),
                                                report_xlsx.Column("N", [1.5, None, 3, 4, 1e20], "number")])
    wb = openpyxl.load_workbook(io.BytesIO(report_xlsx.write_workbook([sheet])))
    ws = wb["Odd text"]
    values = [ws.cell(row=r, column=1).value for r in range(2, 7)]
    assert values[0] == "a < b & c > d" and values[1] == "bell ctrl" and values[3] is None
    assert len(values[2]) == report_xlsx.EXCEL_MAX_CELL_CHARS
    assert [ws.cell(row=r, column=2).value for r in range(2, 7)] == [1.5, None, 3, 4, 1e20]


def test_excel_row_cap_leaves_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_xlsx, "EXCEL_MAX_ROWS", 6)        # 4 data rows + header + note
    flags, lines, quarantine = _flags_and_lines()
    summary = build_summary(run_id="r", run_date="2025-11-07", input_rows=6, lines=lines, flags=flags,
                            quarantine=quarantine)
    data = report_xlsx.build_exceptions_xlsx(flags, summary)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb["Flags"]
    assert ws.max_row == 6
    assert "Showing the first 4 of 6 rows" in ws.cell(row=6, column=1).value


def _many_info_flags() -> pd.DataFrame:
    """Flags in three families: bundling 2 deny + 5 info, place_of_service 1 review + 2 info, units 3 info;
    each info flag's message names its family and its place among that family's info flags."""
    spec = ([("bundling", "deny", 90.0)] * 2 + [("bundling", "info", 0.0)] * 5 + [("place_of_service", "review", 40.0)]
            + [("place_of_service", "info", 0.0)] * 2 + [("units", "info", 0.0)] * 3)
    rng = np.random.default_rng(3)
    spec = [spec[i] for i in rng.permutation(len(spec))]
    seen: dict[str, int] = {}
    messages = []
    for family, severity, _ in spec:
        seen[family + severity] = seen.get(family + severity, 0) + 1
        messages.append(f"{family} {severity} {seen[family + severity]}")
    n = len(spec)
    return pd.DataFrame({
        "claim_id": [f"C{i:02d}" for i in range(n)], "line_number": 1, "patient_id": "P1",
        "service_date": pd.to_datetime(["2025-11-03"] * n), "hcpcs": "99213",
        "rule_family": [f for f, _, _ in spec], "rule_id": "R", "severity": [s for _, s, _ in spec],
        "message": messages, "amount_at_risk": [a for _, _, a in spec], "line_uid": range(n)})


def _sheet_messages(wb: openpyxl.Workbook, name: str) -> tuple[list[str], str | None]:
    """A sheet's flag messages (data rows) and the note below them, if any."""
    ws = wb[name]
    column = [c.value for c in ws[1]].index("What is wrong")
    rows = [r for r in ws.iter_rows(min_row=2, values_only=True) if any(v is not None for v in r)]
    note = rows[-1][0] if rows and rows[-1][column] is None else None
    return [r[column] for r in (rows[:-1] if note else rows)], note


def test_workbook_keeps_every_deny_and_review_flag_and_at_most_info_rows_info_flags_per_sheet() -> None:
    flags = _many_info_flags()
    wb = openpyxl.load_workbook(io.BytesIO(report_xlsx.build_exceptions_xlsx(flags, {}, info_rows=3)))
    assert wb.sheetnames == ["Summary", "Flags", "bundling", "place_of_service", "units"]
    shown, note = _sheet_messages(wb, "Flags")
    assert shown[:3] == ["bundling deny 1", "bundling deny 2", "place_of_service review 1"]
    assert len(shown) == 6 and all(" info " in m for m in shown[3:])       # the first 3 of 10 info flags
    assert "the first 3 of 10 info flags" in note and "flags.csv" in note
    shown, note = _sheet_messages(wb, "bundling")    # its own first three info flags, on the Flags sheet or not
    assert shown == ["bundling deny 1", "bundling deny 2", "bundling info 1", "bundling info 2", "bundling info 3"]
    assert "the first 3 of 5 info flags" in note
    assert _sheet_messages(wb, "place_of_service") == (
        ["place_of_service review 1", "place_of_service info 1", "place_of_service info 2"], None)
    assert _sheet_messages(wb, "units") == (["units info 1", "units info 2", "units info 3"], None)

    wb = openpyxl.load_workbook(io.BytesIO(report_xlsx.build_exceptions_xlsx(flags, {}, info_rows=0)))
    assert _sheet_messages(wb, "Flags")[0] == ["bundling deny 1", "bundling deny 2", "place_of_service review 1"]
    shown, note = _sheet_messages(wb, "units")
    assert shown == [] and "none of the 3 info flags" in note
    uncapped = openpyxl.load_workbook(io.BytesIO(report_xlsx.build_exceptions_xlsx(flags, {}, info_rows=None)))
    assert _sheet_messages(uncapped, "Flags") == (
        _sheet_messages(openpyxl.load_workbook(io.BytesIO(report_xlsx.build_exceptions_xlsx(flags, {}, info_rows=10))),
                        "Flags"))
    assert len(_sheet_messages(uncapped, "Flags")[0]) == len(flags) and _sheet_messages(uncapped, "bundling")[1] is None


def _sheet_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.mark.parametrize("cap", [1_000, 23])   # no sheet capped; the whole sheet and its big parts capped
def test_split_sheet_parts_are_laid_out_as_their_own_sheets_would_be(cap: int, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """The one-pass layout of a sheet and its part sheets (the Flags sheet and the family sheets) writes
    exactly the XML of each part made as a sheet of its own, slices, caps and rows in no part included."""
    monkeypatch.setattr(report_xlsx, "EXCEL_MAX_ROWS", cap)
    monkeypatch.setattr(report_xlsx, "SHEET_CHUNK_ROWS", 8)     # caps and parts end inside slices
    rng = np.random.default_rng(5)
    n = 60
    codes = rng.choice([-1, 0, 1, 2], size=n, p=[0.1, 0.6, 0.2, 0.1])

    def columns() -> list[report_xlsx.Column]:
        return [report_xlsx.Column("$", np.round(rng.uniform(0, 500, n), 2), "money"),
                report_xlsx.Column("Family", pd.Series(np.array(["b", "u", "f", None])[codes]), "text"),
                report_xlsx.Column("Text", pd.Series([f"=row {i}" if i % 9 else None for i in range(n)]), "wrap"),
                report_xlsx.Column("Line", pd.Series(np.arange(n) % 4 + 1, dtype="Int64").mask(codes == 2), "int"),
                report_xlsx.Column("Date", pd.Series(pd.date_range("2025-10-01", periods=n)), "date")]

    split_cols = columns()
    split = report_xlsx.TableSheet("All", split_cols,
                                   split=report_xlsx.SheetSplit(1, codes, ["bundling", "units", "freq"]))
    one_pass = report_xlsx.write_workbook([split])

    sst = report_xlsx.SharedStrings()
    whole_cols = [report_xlsx.Column(c.header, c.values, c.kind, c.width) for c in split_cols]
    for c in whole_cols:
        report_xlsx.encode_column(c, sst)
    parts = [report_xlsx.TableSheet(name, [report_xlsx.Column(c.header, None, c.kind, c.width,
                                                              payload=c.payload.take(np.flatnonzero(codes == p)))
                                           for j, c in enumerate(whole_cols) if j != 1])
             for p, name in enumerate(["bundling", "units", "freq"])]
    apart = report_xlsx.write_workbook([report_xlsx.TableSheet("All", whole_cols), *parts], sst)

    assert _sheet_members(one_pass) == _sheet_members(apart)
    wb = openpyxl.load_workbook(io.BytesIO(one_pass))
    assert wb.sheetnames == ["All", "bundling", "units", "freq"]
    assert wb["units"].max_row == min((codes == 1).sum(), cap - 2) + 1 + ((codes == 1).sum() > cap - 2)


def test_html_is_self_contained_and_escaped(report: tuple[LocalStore, list[str], dict]) -> None:
    store, _, _ = report
    page = store.read_text(PREFIX + "report.html")
    lowered = page.lower()
    for external in ("<script", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe"):
        assert external not in lowered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "$1,405.13" in page and "reconciles" in page
    assert page.count("<svg") == 3 and report_html.COLOR_RISK in page
    assert "=HYPERLINK(&quot;http://x&quot;,&quot;y&quot;)" in page


def test_formats_can_be_chosen(tmp_path: Path) -> None:
    flags, lines, quarantine = _flags_and_lines()
    store = LocalStore(tmp_path)
    summary = build_summary(run_id="r", run_date="2025-11-07", input_rows=6, lines=lines, flags=flags,
                            quarantine=quarantine)
    keys = write_report(store, "out", flags=flags, lines=lines, quarantine=quarantine, summary=summary,
                        formats=("csv",))
    assert keys == ["out/flags.csv", "out/quarantine.csv", "out/summary.json"]
    with pytest.raises(ValueError, match="unknown report format"):
        write_report(store, "out", flags=flags, lines=lines, quarantine=quarantine, summary=summary,
                     formats=("pdf",))


def test_a_run_that_stops_before_its_summary_leaves_no_summary_and_no_waiting_writer(tmp_path: Path) -> None:
    """The flag files and workbook start before the run has its totals; a run that fails in between
    must not hang on the workbook's Summary sheet, nor mark the report complete."""
    from scrubber.report.writers import ReportWriter

    flags, _, quarantine = _flags_and_lines()
    store = LocalStore(tmp_path / "store")
    with pytest.raises(KeyError, match="lost the lines"), ReportWriter(store, "out", flags=flags,
                                                                      quarantine=quarantine):
        raise KeyError("lost the lines")
    assert not store.exists("out/summary.json") and not store.exists("out/exceptions.xlsx")


def test_empty_run_still_writes_a_report(tmp_path: Path) -> None:
    flags, lines, _ = _flags_and_lines()
    store = LocalStore(tmp_path)
    empty_flags = flags.iloc[:0]
    summary = build_summary(run_id="r", run_date="2025-11-07", input_rows=5, lines=lines, flags=empty_flags,
                            quarantine=pd.DataFrame())
    keys = write_report(store, "out/", flags=empty_flags, lines=lines, quarantine=pd.DataFrame(), summary=summary)
    assert keys[-1] == "out/summary.json"
    assert openpyxl.load_workbook(store.local_path("out/exceptions.xlsx")).sheetnames == ["Summary", "Flags"]
    assert "No flags" in store.read_text("out/report.html")
    assert store.read_text("out/quarantine.csv").startswith("source_file,source_row,reason")


# ------------------------------------------------------------------------------------------------
# The page in a real browser


def _png_pixels(path: Path, max_rows: int) -> np.ndarray:
    """Decode the first ``max_rows`` rows of an 8-bit RGB/RGBA PNG (stdlib zlib + numpy)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    rows = min(height, max_rows)
    out = np.zeros((rows, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.int64)
    for y in range(rows):
        line = raw[y * (stride + 1): (y + 1) * (stride + 1)]
        ftype, cur = line[0], np.frombuffer(line[1:], dtype=np.uint8).astype(np.int64)
        if ftype == 0:
            recon = cur
        elif ftype == 2:
            recon = (cur + prior) % 256
        elif ftype == 1:
            recon = cur.reshape(-1, bpp).cumsum(axis=0).reshape(-1) % 256
        else:                                  # Average / Paeth: byte by byte (rare in screenshots)
            r = bytearray(stride)
            p = prior.tolist()
            c = cur.tolist()
            for i in range(stride):
                a = r[i - bpp] if i >= bpp else 0
                b = p[i]
                if ftype == 3:
                    r[i] = (c[i] + (a + b) // 2) % 256
                else:
                    cc = p[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                    r[i] = (c[i] + pred) % 256
            recon = np.frombuffer(bytes(r), dtype=np.uint8).astype(np.int64)
        out[y] = recon
        prior = recon
    return out.reshape(rows, width, bpp)[:, :, :3]


def _count(pixels: np.ndarray, hex_color: str) -> int:
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return int(np.all(pixels == np.array(rgb, dtype=np.uint8), axis=2).sum())


def test_report_renders_in_headless_chromium_with_charts(report: tuple[LocalStore, list[str], dict],
                                                         tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y --no-install-recommends chromium)")
    store, _, _ = report
    page = store.local_path(PREFIX + "report.html")
    shot = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
           f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), result.stderr[-2000:]
    pixels = _png_pixels(shot, max_rows=900)
    # bars of the "dollars at risk" and "flags" charts, in their exact colours
    assert _count(pixels, report_html.COLOR_RISK) > 500
    assert _count(pixels, report_html.COLOR_FLAGS) > 500
    assert _count(pixels, report_html.COLOR_CODES) > 500


def test_info_rows_of_the_workbook_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from scrubber.settings import Settings

    monkeypatch.delenv("SCRUBBER_XLSX_INFO_ROWS", raising=False)
    assert Settings.from_env().xlsx_info_rows == Settings().xlsx_info_rows == 100_000
    for text, rows in (("250,000", 250_000), ("0", 0), ("all", None), ("", 100_000)):
        monkeypatch.setenv("SCRUBBER_XLSX_INFO_ROWS", text)
        assert Settings.from_env().xlsx_info_rows == rows
    monkeypatch.setenv("SCRUBBER_XLSX_INFO_ROWS", "-5")
    with pytest.raises(ValueError, match="SCRUBBER_XLSX_INFO_ROWS"):
        Settings.from_env()
