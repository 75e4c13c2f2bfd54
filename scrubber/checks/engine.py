"""Run the check families and turn their hits into report flags.

Contract with the check modules (``scrubber.checks.<name>`` for every name in :data:`FAMILY_MODULES`):

- module constant ``FAMILY: str`` (one of scrubber.schemas.RULE_FAMILIES) and
  ``check(ctx: CheckContext) -> pd.DataFrame``; pure (no I/O, never mutates ``ctx``).
- the frame has ``schemas.CHECK_RESULT_COLUMNS`` (``line_uid, rule_id, related_line_uid, detail,
  amount_basis``), one row per hit; ``rule_id`` must be a catalog rule of the module's family.
  ``detail`` fills ``{detail}`` in the rule's message; ``amount_basis`` null means the rule's default.
- optional module constant ``READS_PRICING = False``: the family reads none of the columns pricing
  adds (only claim columns, ``ptp_release``/``mue_release``, history and the NCCI tables), so a run
  may check it on canonical lines while it prices them (:func:`families_before_pricing`).
- optional extra columns the engine understands:
    ``related_source``  "batch" (default) or "history": what ``related_line_uid`` refers to.
                        History ``line_uid`` values repeat across runs, so a history reference is
                        resolved by (``related_run_id``, ``related_line_uid``) in ``ctx.history``.
    ``related_run_id``  run id of the related history line (recommended with "history").
    ``severity``        per-hit severity replacing the catalog default (payer overrides still apply).
    ``reference_release`` per-hit release id (default: the line's ``ptp_release`` for PTP-* rules,
                        ``mue_release`` for MUE-* rules, ``rvu_release`` otherwise).

:func:`run_checks` returns flags with exactly ``schemas.FLAG_COLUMNS``. A flag pointing at a history
line gets ``related_claim_id``/``related_line_number`` from history and ``related_line_uid`` NA (it is
not a line of this run). Flags are ordered by rule id, then by the line's intake order; the report
re-sorts them by dollars at risk.

The second half of this module holds small vectorised helpers the check modules share (integer codes
for HCPCS strings, day numbers, same-day group keys, per-line modifier sets); they are cached on the
context so several families pay for a factorisation once.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scrubber.checks.context import CheckContext
from scrubber.schemas import CHECK_RESULT_COLUMNS, FLAG_COLUMNS, RULE_FAMILIES

#: the check modules run by default, in this order
FAMILY_MODULES: tuple[str, ...] = ("units", "bundling", "modifier25", "place_of_service", "frequency",
                                   "code_status", "duplicate")
#: optional result columns (see the module docstring)
OPTIONAL_RESULT_COLUMNS: tuple[str, ...] = ("related_source", "related_run_id", "severity", "reference_release")
#: which line annotation names the release a rule was checked against, by rule-id prefix
RELEASE_COLUMN_BY_PREFIX: tuple[tuple[str, str], ...] = (("PTP-", "ptp_release"), ("MUE-", "mue_release"))
DEFAULT_RELEASE_COLUMN = "rvu_release"
#: copied from the line into each flag
_LINE_FIELDS: tuple[str, ...] = ("claim_id", "line_number", "patient_id", "rendering_npi", "service_date", "hcpcs",
                                 "modifiers", "units", "place_of_service", "payer", "source_file", "source_row")
NAT_DAY = np.iinfo(np.int64).min


# --- running the families -------------------------------------------------------------------------

def run_checks(ctx: CheckContext, *, run_id: str, families: Iterable[str] | None = None,
               timings: dict | None = None) -> pd.DataFrame:
    """Run the check families on ``ctx`` and return report flags (``schemas.FLAG_COLUMNS``).

    ``families``: module names from :data:`FAMILY_MODULES` (default all). ``timings`` (if given)
    receives seconds per family plus ``"flags"`` for building the flag rows. An exception in a check
    propagates with a note naming the family.
    """
    timings = timings if timings is not None else {}
    parts = check_families(ctx, FAMILY_MODULES if families is None else families, timings=timings)
    t0 = time.perf_counter()
    flags = build_flags(ctx, parts, run_id=run_id)
    timings["flags"] = timings.get("flags", 0.0) + time.perf_counter() - t0
    return flags


def check_families(ctx: CheckContext, families: Iterable[str], *, timings: dict | None = None) -> list[pd.DataFrame]:
    """The validated hits (``CHECK_RESULT_COLUMNS``) of each family in ``families``: what
    :func:`build_flags` makes flags of (a run may check some families on another thread)."""
    names = tuple(families)
    unknown = [n for n in names if n not in FAMILY_MODULES]
    if unknown:
        raise ValueError(f"unknown check famil{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)}; "
                         f"known: {', '.join(FAMILY_MODULES)}")
    timings = timings if timings is not None else {}
    parts: list[pd.DataFrame] = []
    for name in names:
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"scrubber.checks.{name}")
            family = getattr(module, "FAMILY", name)
            result = module.check(ctx)
            parts.append(_validated(result, family, ctx))
        except Exception as exc:
            exc.add_note(f"while running check family {name!r} (scrubber.checks.{name})")
            raise
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
    return parts


def families_before_pricing(families: Iterable[str] = FAMILY_MODULES) -> tuple[str, ...]:
    """The families whose module says ``READS_PRICING = False``: they read none of the columns pricing
    adds (status, global days, indicators, amounts), only the claim columns and the NCCI release of
    each line, so a run checks them on canonical lines while another core prices the same lines. A
    module that does not say so is assumed to read pricing."""
    return tuple(name for name in families
                 if getattr(importlib.import_module(f"scrubber.checks.{name}"), "READS_PRICING", True) is False)


def _validated(result: Any, family: str, ctx: CheckContext) -> pd.DataFrame:
    """Catch a check's contract violations here, where the family is known, not later in the report."""
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"check returned {type(result).__name__}, expected a DataFrame")
    missing = [c for c in CHECK_RESULT_COLUMNS if c not in result.columns]
    if missing:
        raise ValueError(f"check result lacks column(s) {missing}")
    if family not in RULE_FAMILIES:
        raise ValueError(f"FAMILY {family!r} is not one of {RULE_FAMILIES}")
    if result.empty:
        return result
    rules = ctx.rules.rules
    fam_of = dict(zip(rules["rule_id"], rules["family"], strict=True))
    ids = set(pd.unique(result["rule_id"]))
    unknown = sorted(str(i) for i in ids if i not in fam_of)
    if unknown:
        raise ValueError(f"rule id(s) not in the rule catalog: {unknown}")
    foreign = sorted(str(i) for i in ids if fam_of[i] != family)
    if foreign:
        raise ValueError(f"rule id(s) {foreign} belong to another family than {family!r}")
    return result


def build_flags(ctx: CheckContext, results: list[pd.DataFrame], *, run_id: str) -> pd.DataFrame:
    """Join check hits with their lines and rule metadata; render messages (vectorised).

    Works on plain arrays and Arrow dictionary decoding: every text column with few distinct values
    (rule metadata, codes, modifiers, dates, details) is formatted once per distinct value.
    """
    rb = ctx.rules
    lines = ctx.lines
    hits = _concat_results(results)
    uids = lines["line_uid"].to_numpy(dtype=np.int64)
    pos = line_positions(ctx, hits["line_uid"])          # also refuses a batch whose line_uid repeats
    if (pos < 0).any():
        bad = hits["line_uid"][pos < 0][:5].tolist()
        raise ValueError(f"check result refers to line_uid(s) not in the batch: {bad}")

    # severity: catalog default, per-hit override, then payer overrides ("off" drops the hit)
    payer_codes, payer_uniq = factorized(ctx, "payer")
    payers = np.asarray([*payer_uniq, None], dtype=object)[payer_codes[pos]] if len(pos) else np.zeros(0, object)
    severity = rb.severity_for(pd.Series(hits["rule_id"], dtype=object), pd.Series(payers, dtype=object),
                               defaults=pd.Series(hits["severity"], dtype=object)).to_numpy(dtype=object)
    keep = severity != "off"
    # order: rule id, then the line's intake order (each rule becomes one contiguous block)
    rule_codes, rule_uniq = pd.factorize(hits["rule_id"])
    rule_uniq = [str(r) for r in np.asarray(rule_uniq, dtype=object)]
    rank = np.argsort(np.argsort(np.asarray(rule_uniq, dtype=object))) if rule_uniq else np.zeros(0, np.int64)
    order = np.flatnonzero(keep)
    order = order[np.lexsort((pos[order], rank[rule_codes[order]]))] if len(order) else order
    hits = {k: v[order] for k, v in hits.items()}
    pos, severity, rule_codes = pos[order], severity[order], rule_codes[order]
    n = len(pos)

    meta = rb.rules.set_index("rule_id")
    def rule_text(col: str) -> pd.Categorical:
        return _categorical(rule_codes, [str(meta.at[r, col]) for r in rule_uniq])

    related = _related(ctx, hits)
    out: dict[str, Any] = {"run_id": _categorical(np.zeros(n, np.int64), [run_id])}
    for col in _LINE_FIELDS:
        out[col] = _take(lines, col, pos)
    out["rule_family"] = rule_text("family")
    out["rule_id"] = _categorical(rule_codes, rule_uniq)
    sev_codes, sev_uniq = pd.factorize(severity)
    out["severity"] = _categorical(sev_codes, [str(v) for v in sev_uniq])
    out["message"] = _render_messages(ctx, hits, rule_codes, rule_uniq, pos, related["related_code"])
    out["related_claim_id"] = related["related_claim_id"]
    out["related_line_number"] = related["related_line_number"]
    if "expected_allowed" in lines:
        allowed = pd.to_numeric(lines["expected_allowed"], errors="coerce").to_numpy(dtype=float)
        out["expected_allowed"] = allowed[pos]
    else:
        out["expected_allowed"] = np.full(n, np.nan)
    out["amount_at_risk"] = np.full(n, np.nan)
    out["reference_release"] = _reference_release(ctx, hits, pos, rule_codes, rule_uniq)
    out["fix"] = _render_messages(ctx, hits, rule_codes, rule_uniq, pos, related["related_code"],
                                  templates=rb.fix_templates or None)
    out["carc"] = rule_text("carc")
    out["line_uid"] = uids[pos]
    out["related_line_uid"] = related["related_line_uid"]
    basis = hits["amount_basis"]
    default_basis = np.asarray([str(meta.at[r, "amount_basis"]) for r in rule_uniq] + [""], dtype=object)
    basis_codes, basis_uniq = pd.factorize(np.where(pd.isna(basis), default_basis[rule_codes] if n else basis, basis))
    out["amount_basis"] = _categorical(basis_codes, [str(v) for v in basis_uniq])
    return pd.DataFrame({c: out[c] for c in FLAG_COLUMNS})


def _concat_results(results: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    """All hits as arrays: line_uid int64, related_line_uid float (NaN = none), the rest object."""
    cols = [*CHECK_RESULT_COLUMNS, *OPTIONAL_RESULT_COLUMNS]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for r in results:
        if r is None or r.empty:
            continue
        m = len(r)
        parts["line_uid"].append(pd.to_numeric(r["line_uid"]).to_numpy(dtype=np.int64))
        parts["related_line_uid"].append(pd.to_numeric(r["related_line_uid"], errors="coerce")
                                         .to_numpy(dtype=float, na_value=np.nan))
        for c in cols:
            if c in ("line_uid", "related_line_uid"):
                continue
            parts[c].append(r[c].to_numpy(dtype=object) if c in r.columns else np.full(m, None, dtype=object))
    if not parts["line_uid"]:
        out = {c: np.zeros(0, dtype=object) for c in cols}
        out["line_uid"] = np.zeros(0, dtype=np.int64)
        out["related_line_uid"] = np.zeros(0, dtype=float)
        return out
    return {c: np.concatenate(v) for c, v in parts.items()}


def line_positions(ctx: CheckContext, uids: np.ndarray) -> np.ndarray:
    """Position in ctx.lines of each line_uid (-1 when not a batch line); ValueError if line_uid repeats.

    Intake numbers lines consecutively, so the usual lookup is a subtraction; anything else uses a
    (cached) hash index.
    """
    def build() -> tuple[int, pd.Index | None]:
        values = ctx.lines["line_uid"].to_numpy(dtype=np.int64)
        if len(values) and int(values[-1]) - int(values[0]) == len(values) - 1 and (np.diff(values) == 1).all():
            return int(values[0]), None
        index = pd.Index(values)
        if not index.is_unique:
            raise ValueError("ctx.lines['line_uid'] is not unique")
        return 0, index

    first, index = cached(ctx, "line_uid_index", build)
    uids = np.asarray(uids, dtype=np.int64)
    if index is not None:
        return index.get_indexer(uids).astype(np.int64, copy=False)
    at = uids - first
    return np.where((at >= 0) & (at < len(ctx.lines)), at, -1)


def _take(frame: pd.DataFrame, col: str, pos: np.ndarray) -> Any:
    """Column values at positions (None-filled when the column is absent)."""
    if col not in frame:
        return pd.Series(np.full(len(pos), None, dtype=object))
    return frame[col].take(pos).reset_index(drop=True)


def _categorical(codes: np.ndarray, texts: list[str]) -> pd.Categorical:
    """Per-flag text that depends only on the rule (or is constant) as a Categorical: no per-row strings.

    Categories are sorted, so sorting by such a column is alphabetical as for plain strings.
    """
    cats = sorted(set(texts))
    at = {text: i for i, text in enumerate(cats)}
    remap = np.array([at[t] for t in texts] + [-1], dtype=np.int64)
    return pd.Categorical.from_codes(remap[np.asarray(codes, dtype=np.int64)],
                                     categories=pd.Index(cats, dtype="str"))


def _related(ctx: CheckContext, hits: dict[str, np.ndarray]) -> dict[str, Any]:
    """related_claim_id / related_line_number / related_line_uid and the related code per hit."""
    n = len(hits["line_uid"])
    lines = ctx.lines
    rel_uid = hits["related_line_uid"]
    has = ~np.isnan(rel_uid)
    source = hits["related_source"]
    source = np.where(pd.isna(source), "batch", source)
    bad_source = set(source[has]) - {"batch", "history"}
    if bad_source:
        raise ValueError(f"related_source must be 'batch' or 'history', got {sorted(bad_source)}")
    claim_pos = np.full(n, -1, dtype=np.int64)         # position in ctx.lines of a batch reference
    line_no = np.zeros(n, dtype=np.int64)
    line_mask = np.ones(n, dtype=bool)                  # True = NA
    uid_out = np.zeros(n, dtype=np.int64)
    uid_mask = np.ones(n, dtype=bool)
    code = np.full(n, -1, dtype=np.int64)
    is_batch = has & (source == "batch")
    if is_batch.any():
        p = line_positions(ctx, rel_uid[is_batch].astype(np.int64))
        if (p < 0).any():
            raise ValueError("related_line_uid refers to a line not in the batch (set related_source='history' "
                             "for history lines)")
        claim_pos[is_batch] = p
        nums = pd.to_numeric(lines["line_number"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)[p]
        line_no[is_batch] = np.nan_to_num(nums).astype(np.int64)
        line_mask[is_batch] = np.isnan(nums)
        uid_out[is_batch] = rel_uid[is_batch].astype(np.int64)
        uid_mask[is_batch] = False
        code[is_batch] = batch_code_ints(ctx)[p]
    claim = (lines["claim_id"].array.take(claim_pos, allow_fill=True) if n
             else lines["claim_id"].array[:0])
    claim = pd.Series(claim).astype("str")
    is_hist = has & (source == "history")
    if is_hist.any():
        got = _history_rows(ctx, rel_uid[is_hist].astype(np.int64), hits["related_run_id"][is_hist])
        where = np.flatnonzero(is_hist)
        claim.iloc[where] = got["claim_id"].astype("str").to_numpy(dtype=object)
        nums = pd.to_numeric(got["line_number"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        line_no[where] = np.nan_to_num(nums).astype(np.int64)
        line_mask[where] = np.isnan(nums)
        code[where] = code_ints(got["hcpcs"])
    return {"related_claim_id": claim,
            "related_line_number": pd.arrays.IntegerArray(line_no, line_mask),
            "related_line_uid": pd.arrays.IntegerArray(uid_out, uid_mask),
            "related_code": code}


def _history_rows(ctx: CheckContext, uids: np.ndarray, runs: np.ndarray) -> pd.DataFrame:
    """claim_id, line_number, hcpcs of history lines by (run_id, line_uid), or line_uid alone."""
    hist = ctx.history
    cols = [c for c in ("run_id", "line_uid", "claim_id", "line_number", "hcpcs") if c in hist]
    hist_uid = pd.to_numeric(hist["line_uid"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    rows = np.flatnonzero(member(hist_uid, uids.astype(float)))     # only the referenced lines
    h = hist[cols].iloc[rows].copy()
    h["line_uid"] = hist_uid[rows].astype(np.int64)
    want = pd.DataFrame({"_row": np.arange(len(uids)), "line_uid": uids, "run_id": runs})
    with_run = ~pd.isna(runs) & ("run_id" in hist)
    found = []
    if with_run.any():
        h_run = h.assign(run_id=h["run_id"].astype("str").astype(object))
        found.append(want[with_run].astype({"run_id": object}).merge(
            h_run.drop_duplicates(["run_id", "line_uid"]), on=["run_id", "line_uid"], how="left"))
    if (~with_run).any():
        found.append(want[~with_run].drop(columns="run_id").merge(
            h.drop(columns=[c for c in ("run_id",) if c in h]).drop_duplicates(["line_uid"]), on="line_uid",
            how="left"))
    got = pd.concat(found, ignore_index=True).sort_values("_row")
    if got["claim_id"].isna().any():
        raise ValueError("related_line_uid (history) not found in ctx.history")
    return got.reset_index(drop=True)


def release_column_for(rule_id: str) -> str:
    """The line annotation naming the release a rule was checked against."""
    for prefix, col in RELEASE_COLUMN_BY_PREFIX:
        if rule_id.startswith(prefix):
            return col
    return DEFAULT_RELEASE_COLUMN


def _reference_release(ctx: CheckContext, hits: dict[str, np.ndarray], pos: np.ndarray, rule_codes: np.ndarray,
                       rule_uniq: list[str]) -> pd.Categorical:
    n = len(pos)
    index: dict[str, int] = {}
    code = np.full(n, -1, dtype=np.int64)
    col_of_rule = np.array([release_column_for(r) for r in rule_uniq] + [""], dtype=object)[rule_codes] \
        if n else np.zeros(0, dtype=object)
    for col in set(col_of_rule):
        mask = col_of_rule == col
        rc, ru = release_codes(ctx, col)
        table = np.array([index.setdefault(r, len(index)) for r in ru] + [-1], dtype=np.int64)
        code[mask] = table[rc[pos[mask]]]
    override = hits["reference_release"]
    has = ~pd.isna(override)
    if has.any():
        oc, ou = pd.factorize(override[has])
        table = np.array([index.setdefault(str(r), len(index)) for r in ou], dtype=np.int64)
        code[has] = table[oc]
    return _categorical(code, list(index))


# --- messages -------------------------------------------------------------------------------------

def _render_messages(ctx: CheckContext, hits: dict[str, np.ndarray], rule_codes: np.ndarray, rule_uniq: list[str],
                     pos: np.ndarray, related_code: np.ndarray,
                     templates: dict[str, list[tuple[str, str | None]]] | None = None) -> pd.Series:
    """Fill each rule's template (the message, or the fix when ``templates`` says so) with per-flag values.

    Flags arrive sorted by rule, so each rule is one contiguous block. Placeholder values come as codes
    into small text tables, so a block's text is written once per distinct combination of its codes.
    The result is categorical (a night's 1.6M messages are a few thousand texts): the report gathers
    and reorders codes, and spells the texts out once, in report order.
    """
    n = len(pos)
    if n == 0:
        return pd.Series([], dtype="str")
    templates = ctx.rules.templates if templates is None else templates
    used = {name for r in rule_uniq for _, name in templates[r] if name}
    fields = {name: _field_texts(ctx, name, hits, pos, related_code) for name in used}
    bounds = np.flatnonzero(np.diff(rule_codes)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    texts_seen: list[str] = []
    codes = np.empty(n, dtype=np.int64)
    for a, b in zip(starts, ends, strict=True):
        template = templates[rule_uniq[rule_codes[a]]]
        names = [name for _, name in template if name]
        if not names:
            codes[a:b] = len(texts_seen)
            texts_seen.append("".join(literal for literal, _ in template))
            continue
        keys = [fields[name][0][a:b] for name in names]
        ids, first = combination_ids(*keys)
        values = [[fields[name][1][c] for c in key[first].tolist()] for name, key in zip(names, keys, strict=True)]
        texts = []
        for j in range(len(first)):
            parts = []
            k = 0
            for literal, name in template:
                parts.append(literal)
                if name:
                    parts.append(values[k][j])
                    k += 1
            texts.append("".join(parts))
        codes[a:b] = len(texts_seen) + ids
        texts_seen += texts
    return pd.Series(_categorical(codes, texts_seen))


def _field_texts(ctx: CheckContext, name: str, hits: dict[str, np.ndarray], pos: np.ndarray,
                 related_code: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One placeholder's text per flag as (code per flag, texts): the sorted flags' values are
    ``texts[code]``. Missing values get the placeholder's stand-in text, never a null."""
    lines = ctx.lines
    if name == "detail":
        return _dict_texts(hits["detail"], str, "")
    if name == "related_hcpcs":
        codes, uniq = factorized(ctx, "hcpcs")
        known = cached(ctx, "hcpcs_text_by_code", lambda: dict(zip(
            code_ints(pd.Series(uniq, dtype=object)).tolist(), (str(u) for u in uniq), strict=True)))
        return _dict_texts(related_code, lambda c: known.get(c) or code_text(c), "another line", missing_code=-1)
    if name == "hcpcs":
        codes, uniq = factorized(ctx, "hcpcs")
        return _code_texts(codes[pos], [str(u) for u in uniq])
    if name == "modifiers":
        mods = line_modifiers(ctx)
        texts = [",".join(m) or "none" for m in mods.sets]
        return _code_texts(mods.codes[pos], texts)
    if name not in lines:
        return np.zeros(len(pos), np.int64), [""]
    if name == "service_date":
        days = cached(ctx, "days:service_date", lambda: day_numbers(lines["service_date"]))[pos]
        return _dict_texts(days, lambda d: str(np.datetime64(int(d), "D")), "an unknown date", missing_code=NAT_DAY)
    if name == "units":
        return _dict_texts(pd.to_numeric(lines["units"], errors="coerce").to_numpy(dtype=float)[pos],
                           _format_units, "?")
    codes, uniq = factorized(ctx, name)
    return _code_texts(codes[pos], [str(u) for u in uniq])


def _code_texts(codes: np.ndarray, texts: list[str], missing: str = "") -> tuple[np.ndarray, list[str]]:
    """(codes, texts) with code -1 pointing at ``missing`` (appended)."""
    texts = [*texts, missing]
    return np.where(codes < 0, len(texts) - 1, codes).astype(np.int64), texts


def _dict_texts(values: np.ndarray, fmt: Callable[[Any], str], missing: str,
                missing_code: Any = None) -> tuple[np.ndarray, list[str]]:
    """``fmt(value)`` per distinct value, as (codes, texts); nulls (or ``missing_code``) become ``missing``."""
    values = np.asarray(values)
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    uniq = np.asarray(uniq, dtype=object)
    texts = [missing if (missing_code is not None and u == missing_code) else fmt(u) for u in uniq]
    return _code_texts(codes, texts, missing)


def _format_units(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:.4f}".rstrip("0").rstrip(".")


def factorized(ctx: CheckContext, column: str) -> tuple[np.ndarray, list]:
    """Cached factorisation of a ctx.lines column: (codes, uniques); code -1 = null or missing column."""
    def build() -> tuple[np.ndarray, list]:
        if column not in ctx.lines:
            return np.full(len(ctx.lines), -1, dtype=np.int64), []
        codes, uniq = pd.factorize(ctx.lines[column], use_na_sentinel=True)
        return codes.astype(np.int64), list(np.asarray(uniq, dtype=object))
    return cached(ctx, f"factorized:{column}", build)


# --- shared vectorised helpers for check modules ----------------------------------------------------

def text_values(ctx: CheckContext, column: str) -> np.ndarray:
    """A ctx.lines column as stripped text ("" for null or a missing column), object array.

    Computed once per distinct value (indicators and statuses have a handful)."""
    codes, uniq = factorized(ctx, column)
    table = np.array([str(u).strip() for u in uniq] + [""], dtype=object)
    return table[codes]


def text_in(ctx: CheckContext, column: str, values: Iterable[str]) -> np.ndarray:
    """Boolean mask: the stripped text of a ctx.lines column is one of ``values``."""
    want = set(values)
    codes, uniq = factorized(ctx, column)
    table = np.array([str(u).strip() in want for u in uniq] + ["" in want], dtype=bool)
    return table[codes]


def make_result(line_uid: Any, rule_id: Any, *, detail: Any = None, related_line_uid: Any = None,
                amount_basis: Any = None, **optional: Any) -> pd.DataFrame:
    """A check-result frame with the standard columns and dtypes (scalars broadcast).

    ``related_line_uid`` may be an integer array where a negative value means "no related line".
    ``optional`` may hold any of :data:`OPTIONAL_RESULT_COLUMNS`.
    """
    uids = np.asarray(line_uid, dtype=np.int64).reshape(-1)
    n = len(uids)

    def col(v: Any) -> pd.Series:
        # object dtype on purpose: letting pandas infer "str" would convert every text twice
        if v is None or np.isscalar(v):
            return pd.Series(np.full(n, v, dtype=object), dtype=object)
        arr = v.to_numpy(dtype=object) if isinstance(v, pd.Series | pd.Index) else np.asarray(v, dtype=object)
        if len(arr) != n:
            raise ValueError(f"result column has {len(arr)} values for {n} lines")
        return pd.Series(arr, dtype=object)

    rel = related_line_uid
    if rel is None or np.isscalar(rel):
        rel_arr = pd.array(np.full(n, pd.NA if rel is None else rel, dtype=object), dtype="Int64")
    else:
        raw = rel.to_numpy() if isinstance(rel, pd.Series | pd.Index) else np.asarray(rel)
        if raw.dtype.kind in "iu":      # integer uids; negative = no related line
            rel_arr = pd.arrays.IntegerArray(raw.astype(np.int64), raw < 0)
        else:
            rel_arr = pd.array(pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce"), dtype="Int64")
    if len(rel_arr) != n:
        raise ValueError(f"related_line_uid has {len(rel_arr)} values for {n} lines")
    out = pd.DataFrame({"line_uid": uids, "rule_id": col(rule_id), "related_line_uid": rel_arr,
                        "detail": col(detail), "amount_basis": col(amount_basis)})
    for k, v in optional.items():
        if k not in OPTIONAL_RESULT_COLUMNS:
            raise ValueError(f"unknown optional result column {k!r}")
        out[k] = col(v)
    return out


def empty_result() -> pd.DataFrame:
    """No hits (correct columns and dtypes)."""
    return make_result(np.array([], dtype=np.int64), None)


def concat_results(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate partial results of one family (empty parts dropped)."""
    parts = [p for p in parts if p is not None and not p.empty]
    if not parts:
        return empty_result()
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _token(ctx: CheckContext) -> tuple[int, int, int, int]:
    return id(ctx.lines), len(ctx.lines), id(ctx.history), len(ctx.history) if ctx.history is not None else -1


def cached(ctx: CheckContext, name: str, build: Callable[[], Any]) -> Any:
    """Memoise derived data on the context (valid while ctx.lines/history are the same objects)."""
    store = ctx.__dict__.setdefault("_derived", {})
    token = _token(ctx)
    hit = store.get(name)
    if hit is not None and hit[0] == token:
        return hit[1]
    value = build()
    store[name] = (token, value)
    return value


def share_derived(source: CheckContext, target: CheckContext) -> None:
    """Give ``target`` what :func:`cached` holds for ``source`` (factorisations, day numbers, same-day
    keys), so the families run on ``target`` do not derive them again.

    Only for a ``target`` whose lines are ``source``'s lines plus columns (the priced frame of the
    canonical lines: same rows, same order, same values) and whose history is the same object: every
    value derived from ``source`` then holds for ``target`` too.
    """
    if len(source.lines) != len(target.lines) or source.history is not target.history:
        raise ValueError("share_derived: the contexts do not hold the same lines and history")
    token, mine = _token(source), _token(target)
    held = target.__dict__.setdefault("_derived", {})
    for name, (made_for, value) in list(source.__dict__.get("_derived", {}).items()):  # a snapshot: the
        # source's thread may still be adding to it
        if made_for == token and name not in held:
            held[name] = (mine, value)


def arrow_strings(values: Any) -> pa.Array:
    """A column as one Arrow large_string array (zero-copy for Arrow-backed str columns)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype | pd.ArrowDtype):
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array(values.to_numpy(dtype=object), from_pandas=True)
    else:
        arr = pa.array(pd.Series(values).to_numpy(dtype=object), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def take_rows(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """``values`` at positions ``rows`` as an object array, cheap for a few rows of a huge chunked column.

    (A pandas/Arrow take on a column made of many chunks may first concatenate all of them; here each
    chunk is only sliced for the rows that fall in it.)
    """
    rows = np.asarray(rows, dtype=np.int64)
    try:
        arr = pa.array(values) if isinstance(values.dtype, pd.StringDtype | pd.ArrowDtype) else None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = None
    if not isinstance(arr, pa.ChunkedArray) or arr.num_chunks <= 1:
        return values.to_numpy(dtype=object)[rows] if len(rows) > len(values) // 8 else \
            values.iloc[rows].to_numpy(dtype=object)
    bounds = np.cumsum([0] + [len(c) for c in arr.chunks])
    chunk_of = np.searchsorted(bounds, rows, side="right") - 1
    out = np.empty(len(rows), dtype=object)
    for c in np.unique(chunk_of):
        sel = np.flatnonzero(chunk_of == c)
        out[sel] = arr.chunk(int(c)).take(pa.array(rows[sel] - bounds[c])).to_numpy(zero_copy_only=False)
    return out


_LEN_TAG = 1 << 56
_LOW40 = (1 << 40) - 1


def _pack_one(text: Any) -> int:
    if text is None or text != text or text == "":
        return -1
    raw = str(text).encode("utf-8")
    if len(raw) <= 7:
        return (len(raw) * _LEN_TAG) | int.from_bytes(raw, "little")
    return -2 - (hash(raw) & ((1 << 60) - 1))


def code_ints(values: Any) -> np.ndarray:
    """HCPCS strings -> int64 that is equal exactly when the strings are equal (no factorisation needed).

    Five-byte codes (the normal case) are read straight out of Arrow's value buffer as overlapping
    little-endian 8-byte words at a stride of 5, masked to 40 bits: one strided view, no copies of
    the strings. Other values take a per-distinct-value path. Null/empty -> -1.
    """
    arr = arrow_strings(values)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.null_count == 0:
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n + 1]
        if offsets[-1] - offsets[0] == 5 * n and (np.diff(offsets) == 5).all():
            buf = arr.buffers()[2]
            start = int(offsets[0])
            out = np.empty(n, dtype=np.int64)
            # words whose 8 bytes stay inside the buffer; the last few are read from a padded copy
            safe = max(0, min(n, (buf.size - start - 8) // 5 + 1))
            if safe:
                words = np.ndarray(shape=(safe,), dtype="<u8", buffer=buf, offset=start, strides=(5,))
                out[:safe] = (words & _LOW40).view(np.int64)
            if safe < n:
                tail = np.zeros(5 * (n - safe) + 3, dtype=np.uint8)
                tail[:5 * (n - safe)] = np.frombuffer(buf, dtype=np.uint8)[start + 5 * safe:start + 5 * n]
                words = np.ndarray(shape=(n - safe,), dtype="<u8", buffer=tail, strides=(5,))
                out[safe:] = (words & _LOW40).view(np.int64)
            return out | (5 * _LEN_TAG)
    codes, uniq = pd.factorize(pd.Series(arr.to_pandas()), use_na_sentinel=True)
    table = np.array([_pack_one(u) for u in np.asarray(uniq, dtype=object)] + [-1], dtype=np.int64)
    return table[np.where(codes < 0, len(table) - 1, codes)]


def code_text(code: int) -> str:
    """Inverse of :func:`code_ints` for codes of up to 7 bytes ("" for null / unpackable)."""
    code = int(code)
    if code < 0:
        return ""
    length = code >> 56
    return (code & (_LEN_TAG - 1)).to_bytes(length, "little").decode("utf-8", "replace")


def combination_ids(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense id per row of several key arrays (ints, bools or strings), and the first row of each id.

    The keys are factorised one by one and combined with a mixed radix (re-factorising whenever the
    product would leave int64), so the cost is a few hash passes, never a Python loop over rows.
    """
    n = len(keys[0]) if keys else 0
    combined = np.zeros(n, dtype=np.int64)
    size = 1
    for k in keys:
        codes, uniq = pd.factorize(np.asarray(k), use_na_sentinel=False)
        if size * max(len(uniq), 1) >= 2**62:
            combined, first = pd.factorize(combined)
            size = len(first)
        combined = combined * max(len(uniq), 1) + codes
        size *= max(len(uniq), 1)
    ids, _ = pd.factorize(combined)
    ids = ids.astype(np.int64)
    first = np.full(int(ids.max(initial=-1)) + 1, -1, dtype=np.int64)
    first[ids[::-1]] = np.arange(n - 1, -1, -1)   # smallest row index per id
    return ids, first


def format_combinations(fmt: Callable[..., str], *keys: np.ndarray) -> np.ndarray:
    """Per-row text from key arrays, calling ``fmt(*key_values)`` once per distinct combination.

    Check details are built from a handful of coded facts (indicator, modifier-set code, code, ...),
    so formatting distinct combinations and expanding by id keeps string work off the per-row path.
    Returns an object array of str.
    """
    if not keys or len(keys[0]) == 0:
        return np.zeros(0, dtype=object)
    arrays = [np.asarray(k) for k in keys]
    ids, first = combination_ids(*arrays)
    columns = [a[first].tolist() for a in arrays]
    texts = np.array([fmt(*row) for row in zip(*columns, strict=True)], dtype=object)
    return texts[ids]


def compact_codes(*arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map packed codes of several arrays onto 0..K-1 (sorted unique); returns (uniques, mapped arrays)."""
    uniq = sorted_unique(np.concatenate([a[a >= 0] for a in arrays])) if arrays else np.zeros(0, np.int64)
    return uniq, [lookup_sorted(uniq, a) for a in arrays]


def sorted_group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Ids 0..K-1 of equal int keys, numbered in key order (not first appearance), and K.

    One stable sort: keys built from same-day group ids arrive nearly sorted, and a sort of nearly
    sorted keys is several times cheaper than hashing a million mostly distinct keys.
    """
    if len(keys) == 0:
        return np.zeros(0, np.int64), 0
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    new = np.empty(len(ranked), dtype=bool)
    new[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
    run = np.cumsum(new)
    run -= 1
    ids = np.empty(len(keys), dtype=np.int64)
    ids[order] = run
    return ids, int(run[-1]) + 1


def member(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """values[i] in pool, by hashing (no sort); for integer keys."""
    if len(values) == 0 or len(pool) == 0:
        return np.zeros(len(values), dtype=bool)
    values, pool = np.asarray(values), np.asarray(pool)
    if len(pool) > 2 * len(values):
        # hash the smaller side: distinct values, probed by the pool
        codes, uniq = pd.factorize(values)
        hit = pd.Index(uniq).get_indexer(pool)
        found = np.zeros(len(uniq) + 1, dtype=bool)
        found[hit[hit >= 0]] = True
        return found[codes]
    return pd.Index(pd.unique(pool)).get_indexer(values) >= 0


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for int arrays with few distinct values: hash first, sort only the distinct ones."""
    return np.sort(pd.unique(np.asarray(values, dtype=np.int64)))


def lookup_sorted(sorted_uniq: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in a unique (e.g. sorted) array, -1 where absent (hash lookup)."""
    if len(sorted_uniq) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    return pd.Index(sorted_uniq).get_indexer(np.asarray(values)).astype(np.int64, copy=False)


def day_numbers(values: Any) -> np.ndarray:
    """Dates -> int64 days since 1970-01-01 (NaT -> NAT_DAY), whatever the datetime unit."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s, errors="coerce")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_localize(None)
    arr = s.to_numpy(dtype="datetime64[ns]") if s.dtype.kind != "M" else s.to_numpy()
    out = arr.astype("datetime64[D]").view(np.int64).copy()
    out[np.isnat(arr)] = NAT_DAY
    return out


def to_day(value: str) -> int:
    """'2019-07-01' -> day number (for comparisons with :func:`day_numbers`)."""
    return int(np.datetime64(value, "D").view(np.int64))


def history_codes(hist: pd.Series, uniques: list) -> np.ndarray:
    """Codes of history values in a batch code space given by its distinct values (-1: not in the batch).

    History values absent from the batch cannot share a group with a batch line, so they need no code
    of their own; looking them up in the batch's distinct values avoids factorising the concatenation.
    A null history value gets the code of the batch's null (when ``uniques`` holds one).
    """
    try:
        found = pc.index_in(arrow_strings(hist), value_set=arrow_strings(pd.Series(uniques, dtype=object)))
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):   # non-text ids
        return pd.Index(uniques).get_indexer(hist.to_numpy()).astype(np.int64)


def codes_with_null(ctx: CheckContext, column: str) -> tuple[np.ndarray, list]:
    """Cached factorisation of a ctx.lines column in which a null is a value of its own (code len(uniques)-1)."""
    def build() -> tuple[np.ndarray, list]:
        codes, uniq = factorized(ctx, column)
        uniq = list(uniq)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(uniq), codes)
            uniq.append(None)
        return codes, uniq
    return cached(ctx, f"factorized_with_null:{column}", build)


def provider_codes(ctx: CheckContext, provider_key: str) -> tuple[np.ndarray, list]:
    """Codes of :func:`provider_values` of ctx.lines (a null is a value of its own) and the distinct values.

    Worked out per distinct NPI from the cached factorisations of the NPI columns, so the families
    that group by provider share one pass over the million lines.
    """
    lines = ctx.lines

    def build() -> tuple[np.ndarray, list]:
        if provider_key not in lines:
            if provider_key == "billing_npi" and "rendering_npi" in lines:
                return codes_with_null(ctx, "rendering_npi")
            raise KeyError(f"provider key column {provider_key!r} is missing")
        if provider_key == "rendering_npi" or "rendering_npi" not in lines:
            return codes_with_null(ctx, provider_key)
        k_codes, k_uniq = codes_with_null(ctx, provider_key)
        r_codes, r_uniq = codes_with_null(ctx, "rendering_npi")
        # a missing or empty provider falls back to the rendering NPI (as provider_values does)
        empty = np.array([u is None or u != u or str(u) == "" for u in k_uniq], dtype=bool)
        if not empty[k_codes].any():
            return k_codes, k_uniq
        index: dict[Any, int] = {}
        k_ids = np.array([-1 if e else index.setdefault(u, len(index)) for u, e in zip(k_uniq, empty, strict=True)],
                         dtype=np.int64)
        r_ids = np.array([index.setdefault(u, len(index)) for u in r_uniq], dtype=np.int64)
        codes = np.where(empty[k_codes], r_ids[r_codes], k_ids[k_codes])
        return codes, list(index)

    return cached(ctx, f"provider_codes:{provider_key}", build)


def provider_values(frame: pd.DataFrame, provider_key: str) -> pd.Series:
    """The provider column for same-provider groups; a missing billing NPI falls back to the rendering NPI."""
    if provider_key not in frame:
        if provider_key == "billing_npi" and "rendering_npi" in frame:
            return frame["rendering_npi"]
        raise KeyError(f"provider key column {provider_key!r} is missing")
    col = frame[provider_key]
    if provider_key != "rendering_npi" and "rendering_npi" in frame:
        empty = col.isna() | (col.astype("str") == "")
        if empty.any():
            col = col.where(~empty, frame["rendering_npi"])
    return col


def same_day_keys(ctx: CheckContext, provider_key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense int64 group id of (patient, date of service, provider) per batch line and history line.

    Batch lines get ids 0..G-1; a history line gets the id of the batch group it joins, or -1 when no
    batch line shares its patient, date and provider (it cannot matter to a same-day check).
    """
    key = provider_key or ctx.settings.provider_key

    def build() -> tuple[np.ndarray, np.ndarray]:
        lines = ctx.lines
        hist = ctx.history if ctx.history is not None and len(ctx.history) else None
        needed = ("patient_id", "service_date")
        if hist is not None and any(c not in hist for c in needed):
            hist = None
        p_b, p_uniq = codes_with_null(ctx, "patient_id")
        v_b, v_uniq = provider_codes(ctx, key)
        n_p, n_v = len(p_uniq), len(v_uniq)
        if hist is not None:
            p_h = history_codes(hist["patient_id"], p_uniq)
            v_h = history_codes(provider_values(hist, key), v_uniq)
        else:
            p_h = v_h = np.zeros(0, np.int64)
        d_b = cached(ctx, "days:service_date", lambda: day_numbers(lines["service_date"]))
        d_h = day_numbers(hist["service_date"]) if hist is not None else np.zeros(0, np.int64)
        valid_b = d_b != NAT_DAY
        d_min = d_b[valid_b].min() if valid_b.any() else 0
        d_max = d_b[valid_b].max() if valid_b.any() else 0
        span = int(d_max - d_min) + 2
        # history days outside the batch's date span can never share a group: map them to the spare slot
        dd_b = np.where(valid_b, d_b - d_min, span - 1)
        in_span = (d_h >= d_min) & (d_h <= d_max)
        dd_h = np.where(in_span, d_h - d_min, span - 1)
        if float(n_p) * n_v * span < 2**62:
            k_b = (p_b * n_v + v_b) * span + dd_b
            k_h = (p_h * n_v + v_h) * span + dd_h
        else:  # pragma: no cover - astronomically many distinct values
            k_b = pd.factorize(pd.MultiIndex.from_arrays([p_b, v_b, dd_b]))[0].astype(np.int64)
            k_h = np.full(len(p_h), -1, np.int64)
        dense_b, uniq = pd.factorize(k_b)
        dense_b = dense_b.astype(np.int64)
        if len(k_h):
            dense_h = pd.Index(uniq).get_indexer(k_h).astype(np.int64)
            # patient or provider unknown to the batch (code -1) would alias another key: no group
            dense_h[~in_span | (p_h < 0) | (v_h < 0)] = -1
        else:
            dense_h = np.zeros(0, np.int64)
        # a batch line without a date of service is alone in its group
        if not valid_b.all():
            bad = np.flatnonzero(~valid_b)
            dense_b[bad] = dense_b.max(initial=-1) + 1 + np.arange(len(bad))
        return dense_b, dense_h

    return cached(ctx, f"same_day_keys:{key}", build)


_SPLIT_RE = re.compile(r"[,;\s]+")


class LineModifiers:
    """Per-line modifier sets, evaluated once per distinct modifier string.

    Claim lines carry few distinct modifier combinations, so a predicate ("has any of these") is
    computed on the distinct strings (``sets``) and expanded by ``codes``.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        n = len(frame)
        if "modifiers" in frame:
            raw = frame["modifiers"]
        elif any(f"modifier_{i}" in frame for i in range(1, 5)):
            cols = [frame[f"modifier_{i}"].fillna("").astype(str) for i in range(1, 5) if f"modifier_{i}" in frame]
            raw = cols[0].str.cat(cols[1:], sep=",")
        else:
            raw = pd.Series([""] * n)
        codes, uniq = pd.factorize(raw, use_na_sentinel=True)
        texts = [u if isinstance(u, str) else "" for u in np.asarray(uniq, dtype=object)] + [""]
        self.codes = np.where(codes < 0, len(texts) - 1, codes).astype(np.int64)
        #: the distinct modifier strings as given (null -> ""), for checks that read the raw text
        self.texts: list[str] = texts
        self.sets: list[tuple[str, ...]] = [tuple(m for m in _SPLIT_RE.split(t.upper()) if m) for t in texts]

    def __len__(self) -> int:
        return len(self.codes)

    def any_of(self, mods: Iterable[str]) -> np.ndarray:
        """True where the line carries at least one of ``mods``."""
        want = set(mods)
        table = np.array([bool(want.intersection(s)) for s in self.sets], dtype=bool)
        return table[self.codes]


#: the history columns the same-day families read (history frames may carry many more)
HISTORY_FIELDS: tuple[str, ...] = ("run_id", "line_uid", "claim_id", "line_number", "patient_id", "rendering_npi",
                                   "billing_npi", "service_date", "hcpcs", "modifiers", "modifier_1", "modifier_2",
                                   "modifier_3", "modifier_4", "units", "status_code", "global_days", "charge_amount")


def history_rows(ctx: CheckContext, rows: np.ndarray) -> pd.DataFrame:
    """The rows ``rows`` of ctx.history, only the columns checks read (copying 40 columns is waste)."""
    hist = ctx.history
    cols = [c for c in HISTORY_FIELDS if c in hist]
    return hist[cols].iloc[rows]


def line_modifiers(ctx: CheckContext, which: str = "lines") -> LineModifiers:
    """Cached :class:`LineModifiers` of ``ctx.lines`` or ``ctx.history``."""
    frame = ctx.lines if which == "lines" else ctx.history
    return cached(ctx, f"modifiers:{which}", lambda: LineModifiers(frame if frame is not None else pd.DataFrame()))


def batch_code_ints(ctx: CheckContext) -> np.ndarray:
    """Cached :func:`code_ints` of ``ctx.lines['hcpcs']``."""
    return cached(ctx, "code_ints:lines", lambda: code_ints(ctx.lines["hcpcs"]))


def release_codes(ctx: CheckContext, column: str) -> tuple[np.ndarray, list[str]]:
    """Cached factorisation of a release annotation of ctx.lines (-1 where no release covers the DOS)."""
    codes, uniq = factorized(ctx, column)
    return codes, [str(u) for u in uniq]


def reference_rows(ctx: CheckContext, column: str, table: pd.DataFrame, code_column: str = "hcpcs",
                   line_codes: np.ndarray | None = None) -> np.ndarray:
    """Row position in ``table`` of (line's release in ``column``, line's hcpcs); -1 when absent.

    ``table`` has a ``release`` column. When a key repeats in the table the first row wins.
    """
    n = len(ctx.lines)
    out = np.full(n, -1, dtype=np.int64)
    if table is None or table.empty or n == 0:
        return out
    rel_codes, rel_uniq = release_codes(ctx, column)
    codes = batch_code_ints(ctx) if line_codes is None else line_codes
    t_rel = table["release"].astype("str").to_numpy(dtype=object) if "release" in table else None
    t_codes = code_ints(table[code_column])
    for r_i, release in enumerate(rel_uniq):
        in_rel = np.flatnonzero(t_rel == release) if t_rel is not None else np.arange(len(table))
        if not len(in_rel):
            continue
        sub_codes = t_codes[in_rel]
        order = np.argsort(sub_codes, kind="stable")
        sorted_codes = sub_codes[order]
        first = np.concatenate([[True], sorted_codes[1:] != sorted_codes[:-1]])
        uniq_codes, rows = sorted_codes[first], in_rel[order[first]]
        lines_in = np.flatnonzero(rel_codes == r_i)
        hit = lookup_sorted(uniq_codes, codes[lines_in])
        ok = hit >= 0
        out[lines_in[ok]] = rows[hit[ok]]
    return out
