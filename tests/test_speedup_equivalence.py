"""The shortcuts taken for speed give the same answers as the straightforward computation.

- intake: the GX suite runs on each column's distinct values and the failures are spread back to the
  rows; compared with the same suite run on every row (real GX, both ways);
- place of service: pos_lookup works on distinct (code, date) pairs; compared with the row-wise lookup;
- shards.stringify: text categoricals are decoded in Arrow, one-kind object columns texted per
  distinct value; compared value by value with the plain conversions;
- report.summary: dollars at risk per line and per group, and counts per group, from factorised codes;
  compared with pandas groupby / value_counts on the same flags;
- shards.ParquetSink: text categoricals are written as Parquet dictionaries without being decoded; the
  file reads back as the stringified frame written the plain way;
- Parquet claim files: repeating text columns are read as dictionaries and validated through their
  codes; the same rows validated from their text give the same lines and quarantine;
- shards: the shard is hashed once per distinct patient (the same numbers as per line), and the
  compressed spill files give back every line once, with its types; text spilled as dictionary codes
  reads back as the text spilled as text;
- checks beside pricing: the families that read nothing pricing adds, checked on canonical lines while
  the lines are priced (pipeline.CheckPlan), flag what they flag on the priced lines;
- report order: claim ids held as Arrow text are ranked by Arrow; the order is the one of the same ids
  as Python strings.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrubber.checks import place_of_service
from scrubber.claims import readers, validate
from scrubber.claims.intake import intake
from scrubber.rules import RuleBook
from scrubber.settings import Settings
from scrubber.shards import ParquetSink, ShardSpill, concat_parts, shard_of, stringify, take_rows


def _gx_on_every_row(vf: validate._ValidationFrame) -> list[pd.DataFrame]:
    """The suite on the whole validation frame (every row as a DataFrame), failures located by source_row."""
    result = validate._gx_validation().run(batch_parameters={"dataframe": vf.to_frame()[validate.GX_COLUMNS]},
                                           result_format=validate._RESULT_FORMAT)
    out = []
    for r in result.results:
        rows = [d["source_row"] for d in (r.result or {}).get("unexpected_index_list") or []]
        if not r.success and rows:
            meta = r.expectation_config.meta
            positions = np.searchsorted(vf["source_row"].to_numpy(), np.asarray(rows, dtype=np.int64))
            out.append(validate._errors_at(vf, positions, meta["field"], meta["reason"]))
    return out


def _raw_claims(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    good = {
        "claim_id": [f"C{i // 3}" for i in range(n)], "line_number": [str(i % 3 + 1) for i in range(n)],
        "patient_id": [f"P{i // 7}" for i in range(n)], "rendering_npi": ["1234567893"] * n,
        "billing_npi": [None] * n, "service_date": ["2025-10-01", "10/02/2025"] * (n // 2),
        "hcpcs": ["99213", "99214", "20610"] * (n // 3) + ["99213"] * (n % 3),
        "units": ["1"] * n, "charge_amount": ["100.00", "$1,250.50", None, "75"] * (n // 4),
        "place_of_service": ["11"] * n, "modifiers": [None] * n,
    }
    frame = pd.DataFrame(good)
    bad = {"claim_id": [None, ""], "line_number": ["x", "0", "100000"], "patient_id": [None],
           "rendering_npi": ["123", "abcdefghij"], "billing_npi": ["99"], "service_date": ["2025-13-45", "soon"],
           "hcpcs": ["9921", None, "992134"], "units": ["-1", "abc", "10000", "0"],
           "charge_amount": ["-5", "a lot"], "place_of_service": ["1", None], "locality": ["0"],
           "service_zip": ["1234"]}
    for col, values in bad.items():
        if col not in frame.columns:
            frame[col] = None
        for v in values:
            frame.loc[rng.integers(0, n, 3), col] = v
    # a column whose most common value fails: padding repeats it, the answer must not change
    frame.loc[: n // 2, "place_of_service"] = "A1"
    frame.insert(0, "source_row", np.arange(2, n + 2))
    return frame


def test_gx_on_distinct_values_finds_the_same_failures_as_on_every_row():
    for n, seed in ((400, 1), (3_000, 2)):
        vf = validate._ValidationFrame(_raw_claims(n, seed))
        fast, slow = validate._gx_failures(vf, "claims.csv"), _gx_on_every_row(vf)
        assert len(fast) == len(slow) and len(fast) >= 10
        for a, b in zip(fast, slow, strict=True):
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_gx_on_distinct_values_with_every_value_missing():
    frame = pd.DataFrame({c: [None] * 4 for c in validate.INPUT_COLUMNS})
    frame.insert(0, "source_row", np.arange(2, 6))
    vf = validate._ValidationFrame(frame)
    fast, slow = validate._gx_failures(vf, "empty.csv"), _gx_on_every_row(vf)
    assert [len(f) for f in fast] == [4] * len(validate.REQUIRED)
    for a, b in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_gx_with_a_memo_of_earlier_chunks_finds_what_each_chunk_alone_finds(monkeypatch):
    """Chunks share a SuiteMemo: values judged in an earlier chunk are not shown to GX again (a chunk
    with nothing new runs no GX at all), and every chunk still gets the failures the whole suite finds
    on its every row, bad values met again included."""
    frame = _raw_claims(3_000, seed=3)
    chunks = [frame.iloc[start:start + 1_000].reset_index(drop=True) for start in range(0, 3_000, 1_000)]
    chunks.append(chunks[0].assign(source_row=chunks[0]["source_row"] + 10_000))  # nothing new in it
    shown: list[tuple[int, ...]] = []
    real = validate._gx_validation

    def recording(chosen=None):
        if chosen is not None:
            shown.append(chosen)
        return real(chosen)

    monkeypatch.setattr(validate, "_gx_validation", recording)
    memo = validate.SuiteMemo()
    for chunk in chunks:
        vf = validate._ValidationFrame(chunk)
        with_memo, alone = validate._gx_failures(vf, "claims.csv", memo), _gx_on_every_row(vf)
        assert len(with_memo) == len(alone) >= 10
        for a, b in zip(with_memo, alone, strict=True):
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    n_specs = len(validate._expectation_specs())
    assert len(shown) == 3 and len(shown[0]) == n_specs          # the repeated chunk ran no GX
    assert all(len(chosen) < n_specs for chosen in shown[1:])    # only the columns with new values


def test_intake_in_chunks_quarantines_what_one_pass_does():
    """Many bad values, each on a few rows spread over the file: validated in five chunks (GX told only
    what it has not judged before) or in one pass, the same rows are quarantined with the same reasons."""
    raw = _raw_claims(3_000, seed=7).drop(columns="source_row")
    csv = raw.to_csv(index=False).encode()
    whole = intake([("c.csv", csv)])
    chunked = intake([("c.csv", csv)], chunk_rows=600)
    assert len(whole.quarantine) > 30
    pd.testing.assert_frame_equal(chunked.quarantine, whole.quarantine)
    pd.testing.assert_frame_equal(chunked.lines, whole.lines)


def test_pos_lookup_on_distinct_pairs_matches_the_row_wise_lookup():
    table = RuleBook.load(Settings().rules_dir).pos
    rng = np.random.default_rng(5)
    n = 5_000
    codes = np.array(["11", "22", "21", "02", "10", "99", "zz", "", " 11 ", "19", "23", "24"], dtype=object)
    pos = pd.Series(codes[rng.integers(0, len(codes), n)], index=np.arange(10, 10 + n), dtype="str")
    pos.iloc[:3] = None
    dates = pd.Series(pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 4_000, n), unit="D"),
                      index=pos.index)
    dates.iloc[3:6] = pd.NaT
    fast = place_of_service.pos_lookup(pos, dates, table)
    slow = place_of_service._pos_lookup_rows(pos.astype("string").str.strip().fillna("").to_numpy(dtype=object),
                                             dates.to_numpy(dtype="datetime64[ns]"), table)
    slow.index = pos.index
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["effective"].any() and (~fast["known"]).any()


def test_stringify_gives_the_plain_conversions():
    n = 1_000
    frame = pd.DataFrame({
        "cat": pd.Categorical(np.where(np.arange(n) % 5 == 0, None, np.where(np.arange(n) % 2, "a", "b"))),
        "flag": np.where(np.arange(n) % 3 == 0, True, False).astype(object),
        "mixed": pd.Series([1, "x", None, 2.5] * (n // 4), dtype=object),
        "text": pd.Series(["t"] * n, dtype="str"),
    })
    frame.loc[7, "flag"] = None
    out = stringify(frame)
    assert frame["cat"].dtype == "category" and out is not frame  # the input is left as it was
    expect_cat = frame["cat"].astype(object).where(frame["cat"].notna(), None)
    assert out["cat"].astype(object).where(out["cat"].notna(), None).tolist() == expect_cat.tolist()
    for col in ("flag", "mixed"):  # dtype and values as the per-value conversion gives them
        plain = frame[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        pd.testing.assert_series_equal(out[col], plain)
    assert out["text"].tolist() == frame["text"].tolist()


def test_flag_parts_joined_as_categories_and_taken_give_the_stringified_concat_and_take():
    """Shard parts keep their rule texts categorical (each part its own categories, one part missing a
    value, another with a gap); joined and taken in report order they are what joining and taking the
    text gives."""
    rng = np.random.default_rng(7)
    parts = []
    for k, texts in enumerate((["b msg", "a msg"], ["c msg"], ["a msg", "d msg", "b msg"])):
        n = 40 + k
        values = np.array(texts, dtype=object)[rng.integers(0, len(texts), n)]
        if k == 2:
            values[3] = None
        parts.append(pd.DataFrame({
            "message": pd.Categorical(values, categories=sorted(texts)),
            "rule_id": pd.Categorical(["R1"] * n, categories=["R1"]),
            "claim_id": pd.Series([f"C{k}{i}" for i in range(n)], dtype="str"),
            "amount": rng.random(n),
        }))
    kept = [stringify(p, keep_text_categoricals=True) for p in parts]
    joined = concat_parts(kept)
    assert isinstance(joined["message"].dtype, pd.CategoricalDtype)
    assert list(joined["message"].cat.categories) == ["a msg", "b msg", "c msg", "d msg"]  # sorted union
    rows = rng.permutation(len(joined))
    expected = pd.concat([stringify(p) for p in parts], ignore_index=True).take(rows).reset_index(drop=True)
    taken = take_rows(joined, rows)
    assert isinstance(taken["message"].dtype, pd.CategoricalDtype)  # codes taken, texts spelled out later
    got = stringify(taken)
    pd.testing.assert_frame_equal(got, expected)
    assert str(got["message"].dtype) == "str" and got["message"].isna().sum() == 1


def test_lines_parquet_from_dictionaries_reads_back_as_the_stringified_frame(tmp_path):
    n = 1_200
    i = np.arange(n)
    frame = pd.DataFrame({
        "status": pd.Categorical(np.where(i % 7 == 0, None, np.where(i % 2, "A", "T"))),
        "note": pd.Categorical(np.where(i % 3 == 0, "capped at OPPS", None)),
        "never": pd.Categorical([None] * n, categories=pd.Index([], dtype=object)),
        "number_cat": pd.Categorical(i % 4),              # not text: written as text, as stringify does
        "flag": np.where(i % 3 == 0, True, False).astype(object),
        "cents": pd.array(np.where(i % 5 == 0, None, i), dtype="Int64"),
        "text": pd.Series(np.where(i % 11 == 0, None, "x"), dtype="str"),
        "day": pd.to_datetime("2025-11-03") + pd.to_timedelta(i % 30, unit="D"),
    })
    plain = tmp_path / "plain.parquet"
    stringify(frame).to_parquet(plain, index=False)
    expected = pd.read_parquet(plain)

    whole = ParquetSink(tmp_path / "whole.parquet")
    whole.write(frame)
    whole.close()
    pd.testing.assert_frame_equal(pd.read_parquet(whole.path), expected)

    # parts whose categoricals differ (a shard without a category, one with a new one) still make one file
    parts = ParquetSink(tmp_path / "parts.parquet")
    first, second = frame.iloc[:500].copy(), frame.iloc[500:].copy()
    first["status"] = first["status"].cat.remove_unused_categories().cat.add_categories(["Z"])
    parts.write(first)
    parts.write(second)
    parts.close()
    pd.testing.assert_frame_equal(pd.read_parquet(parts.path), expected)
    assert str(pd.read_parquet(parts.path)["status"].dtype) == "str"


def test_summary_groups_give_the_groupby_answers():
    from scrubber.report import summary

    rng = np.random.default_rng(7)
    n = 4_000
    flags = pd.DataFrame({
        "line_uid": rng.integers(0, 700, n), "claim_id": pd.Series(rng.integers(0, 250, n).astype(str), dtype="str"),
        "line_number": rng.integers(1, 4, n), "amount_at_risk": np.round(rng.random(n) * 100, 2),
        "payer": pd.Series(np.where(rng.random(n) < 0.1, None, rng.choice(["acme", "medicare"], n)), dtype="str"),
        "severity": rng.choice(["deny", "review", "info"], n)})
    flags.loc[rng.random(n) < 0.05, "amount_at_risk"] = np.nan
    for frame in (flags, flags.drop(columns="line_uid")):
        keys = ["line_uid"] if "line_uid" in frame else ["claim_id", "line_number"]
        plain = frame.assign(_cents=np.rint(frame["amount_at_risk"].fillna(0) * 100).astype(np.int64),
                             payer=frame["payer"].astype(object).where(frame["payer"].notna(), "(none)"))
        per_line = plain.groupby(keys)["_cents"].max()
        got = summary.line_risk_cents(frame).sort_index()
        assert got.index.equals(per_line.index) and (got.to_numpy() == per_line.to_numpy()).all()
        per_payer = plain.groupby([*keys, "payer"])["_cents"].max().groupby(level="payer").sum()
        line = summary._line_codes(frame).astype(np.int64)
        risk = summary._risk_by(frame, "payer", line, summary._cents(frame["amount_at_risk"]))
        assert risk == {k: round(v / 100, 2) for k, v in per_payer.sort_values(ascending=False).items()}
        assert summary._count_by(frame, "payer") == {k: int(v) for k, v in plain["payer"].value_counts().items()}


def test_parquet_dictionaries_validate_like_their_text():
    frame = _raw_claims(3_000, 7).drop(columns=["source_row"])
    frame["units"] = frame["units"].where(frame.index % 11 != 0, " 2 ")   # spaces: normalised per value
    frame["modifiers"] = np.where(frame.index % 4 == 0, "25", None)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=700)
    known = set(validate.INPUT_COLUMNS)
    for chunk_rows in (10_000, 1_000):  # whole file, and batches regrouped into chunks
        tables = list(readers.read_parquet_chunks("claims.parquet", buf.getvalue(), known, chunk_rows))
        assert all(len(t.frame) == min(chunk_rows, 3_000 - i * chunk_rows) for i, t in enumerate(tables))
        assert {"hcpcs", "service_date", "units", "rendering_npi"} <= set(tables[0].codes)
        assert not {"claim_id", "patient_id"} & set(tables[0].codes)   # mostly distinct: read as text
        for table in tables:
            with_codes = validate.validate_table(table, known)
            from_text = validate.validate_table(dataclasses.replace(table, codes={}), known)
            for a, b in zip(with_codes, from_text, strict=True):
                pd.testing.assert_frame_equal(a, b)
            assert len(with_codes[1])   # the bad values of _raw_claims are quarantined both ways


def test_shard_of_hashes_each_patient_once_and_agrees_with_the_per_line_hash():
    """Shards are chosen per distinct patient: the same numbers as hashing every line, for text, object
    (with gaps) and number ids, and the same patient gets the same shard in any chunk."""
    ids = pd.Series([f"P{i % 997}" for i in range(5_000)], dtype="str")
    for patients in (ids, ids.astype(object), pd.Series(["a", None, "b", np.nan, "a"], dtype=object),
                     pd.Series([7, 8, 7])):
        per_line = pd.util.hash_pandas_object(patients.astype(str), index=False).to_numpy() % np.uint64(8)
        assert np.array_equal(shard_of(patients, 8), per_line.astype(np.int64))
    whole = dict(zip(ids, shard_of(ids, 8), strict=True))
    part = ids.iloc[3_000:].reset_index(drop=True)
    assert all(whole[p] == k for p, k in zip(part, shard_of(part, 8), strict=True))
    assert set(shard_of(ids, 8)) == set(range(8))


def test_shard_spill_gives_back_every_line_once_with_its_types(tmp_path):
    """The compressed spill files read back as the lines given, each patient whole in one shard."""
    csv = _raw_claims(3_000, seed=3).drop(columns="source_row").to_csv(index=False).encode()
    lines = intake([("c.csv", csv)]).lines   # canonical lines, the bad rows quarantined
    assert len(lines) > 1_000
    with ShardSpill(3, workdir=tmp_path) as spill:
        for start in range(0, len(lines), 400):   # chunks: a patient's lines arrive in several
            spill.add(lines.iloc[start:start + 400].reset_index(drop=True))
        shards = list(spill.shards())
    assert len(shards) == 3
    owners = pd.concat([s[["patient_id"]].drop_duplicates().assign(k=k) for k, s in enumerate(shards)])
    assert not owners["patient_id"].duplicated().any()
    back = pd.concat(shards, ignore_index=True).sort_values("line_uid", ignore_index=True)
    pd.testing.assert_frame_equal(back, lines)
    assert list(tmp_path.iterdir()) == []   # the temporary files are gone


def test_text_spilled_as_codes_reads_back_as_the_text_spilled_as_text(tmp_path):
    """Intake's dictionary text (codes into each chunk's values, every chunk its own) spilled into shards
    and read back gives the lines of the plain text spill: the same values and types, normalised
    spellings (payer case) and filled gaps (the default payer, empty modifiers) included. A column with
    more distinct values than the spill keeps as codes (one diagnosis per line) is spilled as text."""
    from scrubber.claims.intake import IntakeStream

    raw = _raw_claims(3_000, seed=5).drop(columns="source_row")
    raw["payer"] = np.where(raw.index % 3 == 0, "Medicare", np.where(raw.index % 3 == 1, "MEDICARE", None))
    raw["modifiers"] = np.where(raw.index % 5 == 0, "25", np.where(raw.index % 5 == 1, "59,rt", None))
    raw["diagnosis_codes"] = [f"M{i:05d}" for i in range(len(raw))]
    csv = raw.to_csv(index=False).encode()
    back = {}
    for coded in (False, True):
        stream = IntakeStream([("c.csv", csv)], chunk_rows=700, dictionary_text=coded)
        with ShardSpill(3, workdir=tmp_path) as spill:
            for chunk in stream:
                kinds = {c: str(chunk[c].dtype) for c in ("hcpcs", "payer", "modifier_1", "diagnosis_codes")}
                assert all(k.startswith("dictionary") == coded for k in kinds.values()), kinds
                spill.add(chunk)
            back[coded] = list(spill.shards())
            assert spill._decoded == (set() if not coded else {"diagnosis_codes"})
    assert len(back[True]) == 3
    for text, codes in zip(back[False], back[True], strict=True):
        pd.testing.assert_frame_equal(codes, text)
    lines = pd.concat(back[True], ignore_index=True)
    assert set(lines["payer"]) == {"medicare"} and "" in set(lines["modifier_1"])


def _sample_nights(tmp_path):
    """The bundled sample split into two nights: the first scrubbed (its lines become history), the
    second returned as canonical lines with a store and engine ready for it."""
    from datetime import date
    from pathlib import Path

    from scrubber.pipeline import Engine, run_scrub
    from scrubber.reference.loader import load_paths
    from scrubber.store import LocalStore

    repo = Path(__file__).resolve().parents[1]
    claims = pd.read_csv(repo / "data" / "claims" / "sample_claims.csv", dtype=str, keep_default_na=False)
    key = pd.read_csv(repo / "data" / "claims" / "sample_answer_key.csv", dtype=str, keep_default_na=False)
    # night 2 starts at the repeated new-patient visit, so its earlier visit is history (a frequency hit)
    first = claims["claim_id"] < key.loc[key["rule_id"] == "FREQ-NEW-PATIENT", "claim_id"].min()
    paths = []
    resent = claims[claims["claim_id"] == claims["claim_id"].iloc[0]]  # sent again on night 2: DUP-HISTORY
    for name, part in (("night1.csv", claims[first]), ("night2.csv", pd.concat([claims[~first], resent]))):
        paths.append(tmp_path / name)
        part.to_csv(paths[-1], index=False)
    store = LocalStore(tmp_path / "store")
    load_paths(store, [repo / "data" / "reference" / "sample-rvu25d", repo / "data" / "reference" / "sample-ncci"],
               partial=True)
    settings = Settings.from_env(store=str(tmp_path / "store"))
    run_scrub(store, [paths[0]], run_date=date(2026, 1, 5), run_id="night-1", out_dir=tmp_path / "r1",
              settings=settings)
    return Engine(store, settings), intake([paths[1]]).lines


def test_families_checked_beside_pricing_give_the_flags_of_the_plain_check(tmp_path):
    """The families a run checks on canonical lines while it prices them (CheckPlan) flag exactly what
    they flag on the priced lines, history included."""
    from concurrent.futures import ThreadPoolExecutor

    from scrubber.pipeline import CheckPlan, check_frame, price_frame, with_ncci_releases

    engine, lines = _sample_nights(tmp_path)
    plain = check_frame(engine, price_frame(engine, lines), run_id="night-2")
    for early_first in (True, False):
        canonical = with_ncci_releases(engine, lines)
        with ThreadPoolExecutor(max_workers=1) as pool:
            plan = CheckPlan(engine, canonical, run_id="night-2", pool=pool)
            if early_first:  # every early family on the canonical lines, before any pricing
                plan.finish()
            planned = check_frame(engine, price_frame(engine, canonical), run_id="night-2", plan=plan)
        assert plan.families == ("units", "frequency", "duplicate")
        assert len(plan.inputs.result().history), "night 1 left no history for night 2"
        order = ["line_uid", "rule_id", "related_line_uid", "related_claim_id"]
        pd.testing.assert_frame_equal(planned.sort_values(order).reset_index(drop=True),
                                      plain.sort_values(order).reset_index(drop=True))
    assert {"units", "frequency", "duplicate"} <= set(plain["rule_family"].astype(str))


def test_derived_data_is_shared_only_between_contexts_of_the_same_lines():
    from scrubber.checks.context import CheckContext
    from scrubber.checks.engine import cached, share_derived

    lines = pd.DataFrame({"patient_id": ["a", "b", "a"], "hcpcs": ["99213", "20610", "99213"]})
    history = pd.DataFrame()
    source = CheckContext(lines=lines, history=history, pprrvu=pd.DataFrame(), ptp=pd.DataFrame(), mue=pd.DataFrame(),
                          rules=None)
    codes = cached(source, "factorized:patient_id", lambda: pd.factorize(lines["patient_id"]))
    priced = dataclasses.replace(source, lines=lines.assign(expected_allowed=[1.0, 2.0, 3.0]))
    share_derived(source, priced)
    assert cached(priced, "factorized:patient_id", lambda: pytest.fail("derived again")) is codes
    other = dataclasses.replace(source, lines=lines.iloc[:2])
    with pytest.raises(ValueError, match="same lines"):
        share_derived(source, other)


def test_report_order_of_claim_ids_as_arrow_text_is_their_order_as_python_strings():
    from scrubber.pipeline import _report_order

    rng = np.random.default_rng(11)
    n = 5_000
    ids = np.array(["C10", "C9", "c1", "Ä1", "é2", "z", "C1 ", "", "C100", "ÿ"], dtype=object)[rng.integers(0, 10, n)]
    ids[rng.random(n) < 0.05] = None
    flags = pd.DataFrame({
        "claim_id": pd.array(ids, dtype="str"),
        "line_number": rng.integers(1, 4, n),
        "rule_id": pd.Categorical(rng.choice(["PTP-BYPASS", "MUE-LINE", "EM-NO25"], n)),
        "severity": pd.Categorical(rng.choice(["deny", "review", "info"], n)),
        "amount_at_risk": np.where(rng.random(n) < 0.5, 0.0, rng.integers(1, 5, n) * 10.0),
    })
    assert flags["claim_id"].dtype.storage == "pyarrow"
    as_objects = flags.assign(claim_id=flags["claim_id"].astype(object))
    assert (_report_order(flags) == _report_order(as_objects)).all()
