"""The rule book: everything under rules/ parsed and validated once per run.

Rules are data (architecture: "rules are data"): a billing team tunes severities, messages, payer
overrides, modifier lists, the POS map, frequency limits and bundled supplies in YAML, never in code.
Every problem found while reading names the file, the key and the line so it can be fixed without a
debugger.

Layout read by :meth:`RuleBook.load`::

    rules/catalog/*.yaml    rule ids, families, severities, message templates (all files)
    rules/payers.yaml       payer -> {rule_id: deny|review|info|off}
    rules/modifiers.yaml    modifier groups (scrubber.claims.validate.load_modifier_sets)
    rules/pos.yaml          place-of-service table (scrubber.checks.place_of_service.load_pos_table)
    rules/frequency.yaml    frequency limits (scrubber.checks.frequency.load_frequency_rules)
    rules/em_codes.yaml     E/M code groups (scrubber.checks.modifier25.load_em_codes; billing-domain 6.2)
    rules/bundled.yaml      supplies/drugs included in same-day procedures (billing-domain 9.3)

YAML is read with YAML 1.2 booleans (only ``true``/``false``), so ``MUE-NONE: off`` means the string
"off" as a billing person would expect, not ``False``.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from scrubber.errors import RulesError
from scrubber.schemas import RULE_FAMILIES, SEVERITIES

#: how amount_at_risk is derived for a flag (pricing reads this)
AMOUNT_BASES: tuple[str, ...] = ("line", "pos_difference", "mppr", "none")
#: catalog entry keys that must be present
REQUIRED_RULE_KEYS: tuple[str, ...] = ("id", "family", "severity", "title", "message", "fix", "carc",
                                       "amount_basis", "source")
#: placeholders a message template may use (the engine fills them per flag)
TEMPLATE_FIELDS: frozenset[str] = frozenset({"hcpcs", "modifiers", "units", "place_of_service", "service_date",
                                             "related_hcpcs", "detail"})
#: a payer override may also switch a rule off for that payer
OVERRIDE_VALUES: tuple[str, ...] = (*SEVERITIES, "off")
RULE_COLUMNS: list[str] = ["rule_id", "family", "severity", "title", "message", "fix", "carc", "amount_basis",
                           "source"]
#: the payer of a line that names none (intake fills it in; payer overrides and frequency scopes key on it)
DEFAULT_PAYER = "medicare"
#: modifier groups of rules/modifiers.yaml the bundling and duplicate checks read
REQUIRED_MODIFIER_GROUPS: tuple[str, ...] = ("ncci_associated", "x_modifiers", "repeat", "anatomic")

_CODE_RE = re.compile(r"^[A-Z0-9]{5}$")
_RANGE_END_RE = re.compile(r"^([A-Z]*)(\d+)([A-Z]*)$")


# --- YAML with line numbers -----------------------------------------------------------------------

class _Map(dict):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list):
    """A sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


#: libyaml's parser when PyYAML was built with it (several times faster), else the pure-Python one
SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(SAFE_LOADER):
    """SafeLoader with YAML 1.2 booleans and line marks on every mapping and sequence."""


# YAML 1.1 turns on/off/yes/no into booleans; rule files use "off" as a word.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def read_yaml(path: Path) -> Any:
    """Parse one rules file; mappings/sequences carry ``line``/``key_lines``/``item_lines``.

    Raises RulesError naming the file (and line) when it is missing or not valid YAML.
    """
    if not path.is_file():
        raise RulesError(f"{path}: rules file is missing")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{path}{where}: not valid YAML: {exc.problem or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from exc


def line_of(container: Any, key: Any = None) -> int | None:
    """Line of ``container[key]`` (or of the container itself) when the loader recorded it."""
    if key is None:
        return getattr(container, "line", None)
    if isinstance(container, _Map):
        return container.key_lines.get(key, container.line)
    if isinstance(container, _Seq) and isinstance(key, int) and key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", None)


def rules_error(path: Path, reason: str, *, key: str | None = None, line: int | None = None) -> RulesError:
    """A RulesError worded like InputFileError: ``file, line N, key 'k': reason``."""
    where = str(path)
    if line is not None:
        where += f", line {line}"
    if key:
        where += f", key {key!r}"
    return RulesError(f"{where}: {reason}")


# --- code lists with ranges -----------------------------------------------------------------------

def expand_codes(items: Any, path: Path, key: str, line: int | None) -> list[str]:
    """Expand ``["J2001", "20600-20611"]`` into codes; a range keeps its prefix, suffix and width.

    Ranges are inclusive and numeric ("64400-64530" lists every number, existing code or not, which
    is harmless for matching). Unquoted numbers are refused because YAML would drop leading zeros.
    """
    if not isinstance(items, list):
        raise rules_error(path, "expected a list of codes or ranges", key=key, line=line)
    out: list[str] = []
    for i, item in enumerate(items):
        item_line = line_of(items, i) or line
        if not isinstance(item, str):
            raise rules_error(path, f"code {item!r} must be a quoted string (leading zeros matter)",
                              key=key, line=item_line)
        text = item.strip().upper()
        if "-" in text:
            lo, _, hi = (part.strip() for part in text.partition("-"))
            m_lo, m_hi = _RANGE_END_RE.match(lo), _RANGE_END_RE.match(hi)
            if (not m_lo or not m_hi or len(lo) != 5 or len(hi) != 5 or m_lo.group(1) != m_hi.group(1)
                    or m_lo.group(3) != m_hi.group(3) or len(m_lo.group(2)) != len(m_hi.group(2))
                    or int(m_lo.group(2)) > int(m_hi.group(2))):
                raise rules_error(path, f"bad code range {item!r} (expected e.g. '20600-20611')",
                                  key=key, line=item_line)
            prefix, suffix, width = m_lo.group(1), m_lo.group(3), len(m_lo.group(2))
            out.extend(f"{prefix}{n:0{width}d}{suffix}"
                       for n in range(int(m_lo.group(2)), int(m_hi.group(2)) + 1))
        elif _CODE_RE.match(text):
            out.append(text)
        else:
            raise rules_error(path, f"bad HCPCS code {item!r} (5 letters/digits)", key=key, line=item_line)
    return out


# --- message templates ----------------------------------------------------------------------------

def parse_template(template: str, path: Path, line: int | None, *,
                   key: str = "message") -> list[tuple[str, str | None]]:
    """Split a message (or fix) template into (literal, field) parts for vectorised rendering."""
    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise rules_error(path, f"bad {key} template: {exc}", key=key, line=line) from exc
    for literal, name, spec, conversion in parsed:
        if name is not None and name not in TEMPLATE_FIELDS:
            raise rules_error(path, f"unknown placeholder {{{name}}} in {key}; allowed: "
                              + ", ".join(sorted(TEMPLATE_FIELDS)), key=key, line=line)
        if spec or conversion:
            raise rules_error(path, f"placeholder {{{name}}} may not carry a format spec or conversion",
                              key=key, line=line)
        parts.append((literal, name))
    return parts


# --- the rule book --------------------------------------------------------------------------------

@dataclass
class RuleBook:
    """Parsed rules/. Build with :meth:`load`; checks read it through ``ctx.rules``."""

    rules: pd.DataFrame
    payer_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    modifiers: dict[str, set[str]] = field(default_factory=dict)
    pos: pd.DataFrame = field(default_factory=pd.DataFrame)
    frequency: object = None
    #: E/M codes: a frozenset of HCPCS (scrubber.checks.modifier25.EmCodes, which also carries the group
    #: settings of rules/em_codes.yaml)
    em_codes: frozenset[str] | set[str] = field(default_factory=frozenset)
    #: supply/drug code -> procedure code pairs (columns item, procedure, group, source)
    bundled: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BUNDLED_COLUMNS))
    rules_dir: Path | None = None
    #: rule_id -> (file, line) of its catalog entry, for error messages
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    #: rule_id -> message template split into (literal, placeholder) parts
    templates: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    #: rule_id -> fix template, same placeholders as messages (e.g. "add modifier 25 to {hcpcs}")
    fix_templates: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def load(cls, rules_dir: Path) -> RuleBook:
        """Read and validate every rules file; raise RulesError naming file, key and line."""
        rules_dir = Path(rules_dir)
        if not rules_dir.is_dir():
            raise RulesError(f"{rules_dir}: rules folder not found")
        rules, origins, templates, fix_templates = load_catalog(rules_dir / "catalog")
        known = set(rules["rule_id"])
        overrides = load_payer_overrides(rules_dir / "payers.yaml", known)
        modifiers = _call_loader("scrubber.claims.validate", "load_modifier_sets", rules_dir,
                                 rules_dir / "modifiers.yaml")
        missing_groups = [g for g in REQUIRED_MODIFIER_GROUPS if not modifiers.get(g)]
        if missing_groups:
            raise rules_error(rules_dir / "modifiers.yaml", "the checks need the modifier group(s) "
                              + ", ".join(missing_groups), key="groups")
        pos = _call_loader("scrubber.checks.place_of_service", "load_pos_table", rules_dir / "pos.yaml",
                           rules_dir / "pos.yaml")
        frequency = _call_loader("scrubber.checks.frequency", "load_frequency_rules", rules_dir / "frequency.yaml",
                                 rules_dir / "frequency.yaml")
        from scrubber.checks.frequency import catalog_problems
        problems = catalog_problems(frequency, dict(zip(rules["rule_id"], rules["family"], strict=True)))
        if problems:
            raise rules_error(rules_dir / "frequency.yaml", "; ".join(problems), key="report_as")
        em_codes = _call_loader("scrubber.checks.modifier25", "load_em_codes", rules_dir / "em_codes.yaml",
                                rules_dir / "em_codes.yaml")
        bundled = load_bundled(rules_dir / "bundled.yaml")
        return cls(rules=rules, payer_overrides=overrides, modifiers=modifiers, pos=pos, frequency=frequency,
                   em_codes=em_codes, bundled=bundled, rules_dir=rules_dir, origins=origins, templates=templates,
                   fix_templates=fix_templates)

    # -- queries --------------------------------------------------------------------------------

    def rule(self, rule_id: str) -> dict[str, str]:
        """One catalog entry as a dict (KeyError naming the id when unknown)."""
        hit = self.rules[self.rules["rule_id"] == rule_id]
        if hit.empty:
            raise KeyError(f"rule {rule_id!r} is not in the rule catalog")
        return hit.iloc[0].to_dict()

    def modifier_set(self, *groups: str) -> set[str]:
        """Union of modifier groups from rules/modifiers.yaml (KeyError naming a missing group)."""
        out: set[str] = set()
        for g in groups:
            if g not in self.modifiers:
                raise KeyError(f"modifier group {g!r} is not defined in rules/modifiers.yaml "
                               f"(have: {', '.join(sorted(self.modifiers))})")
            out |= set(self.modifiers[g])
        return out

    def severity_for(self, rule_ids: pd.Series, payers: pd.Series, defaults: pd.Series | None = None) -> pd.Series:
        """Severity per flag after payer overrides; "off" means the payer does not want the flag.

        ``defaults`` (optional, per flag) replaces the catalog severity where not null, e.g. a frequency
        rule whose severity is set per limit; payer overrides still win. Payers match case-insensitively;
        an empty payer is Medicare.
        """
        ids = pd.Series(rule_ids).reset_index(drop=True)
        codes, uniq = pd.factorize(ids)
        sev_map = dict(zip(self.rules["rule_id"], self.rules["severity"], strict=True))
        missing = [u for u in uniq if u not in sev_map]
        if missing:
            raise KeyError(f"rule id(s) not in the rule catalog: {', '.join(map(str, missing[:10]))}")
        table = np.array([sev_map[u] for u in uniq] + [None], dtype=object)
        result = table[codes]  # codes is never -1 here: ids are non-null catalog ids
        if defaults is not None:
            d = pd.Series(defaults).reset_index(drop=True)
            has = d.notna().to_numpy()
            if has.any():
                bad = set(d[has]) - set(SEVERITIES)
                if bad:
                    raise ValueError(f"unknown severity value(s) from a check: {sorted(map(str, bad))}")
                result[has] = d[has].to_numpy(dtype=object)
        if self.payer_overrides and len(ids):
            pcodes, praw = pd.factorize(pd.Series(payers).reset_index(drop=True), use_na_sentinel=True)
            puniq = [str(p).strip().lower() or DEFAULT_PAYER for p in np.asarray(praw, dtype=object)]
            pcodes = np.where(pcodes < 0, len(puniq), pcodes)
            puniq.append(DEFAULT_PAYER)                      # no payer on the line: Medicare
            uniq_index = {u: i for i, u in enumerate(uniq)}
            for p_i, payer in enumerate(puniq):
                rules_for = self.payer_overrides.get(payer)
                if not rules_for:
                    continue
                payer_mask = pcodes == p_i
                for rule_id, sev in rules_for.items():
                    r_i = uniq_index.get(rule_id)
                    if r_i is not None:
                        result[payer_mask & (codes == r_i)] = sev
        return pd.Series(result, dtype=object, name="severity")


BUNDLED_COLUMNS: list[str] = ["item", "procedure", "group", "source"]


def load_catalog(catalog_dir: Path) -> tuple[pd.DataFrame, dict[str, tuple[str, int | None]],
                                              dict[str, list[tuple[str, str | None]]]]:
    """All rules/catalog/*.yaml files -> (rules frame, origins, parsed templates)."""
    if not catalog_dir.is_dir():
        raise RulesError(f"{catalog_dir}: rule catalog folder not found")
    files = sorted(catalog_dir.glob("*.yaml")) + sorted(catalog_dir.glob("*.yml"))
    if not files:
        raise RulesError(f"{catalog_dir}: no *.yaml rule catalog files")
    records: list[dict[str, str]] = []
    origins: dict[str, tuple[str, int | None]] = {}
    templates: dict[str, list[tuple[str, str | None]]] = {}
    fix_templates: dict[str, list[tuple[str, str | None]]] = {}
    for path in files:
        doc = read_yaml(path)
        entries = doc.get("rules") if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            raise rules_error(path, "expected a list of rules under 'rules:'", key="rules", line=line_of(doc))
        for i, entry in enumerate(entries):
            entry_line = line_of(entries, i)
            if not isinstance(entry, dict):
                raise rules_error(path, "each rule must be a mapping of id, family, severity, ...",
                                  line=entry_line)
            missing = [k for k in REQUIRED_RULE_KEYS if k not in entry]
            if missing:
                raise rules_error(path, f"rule {entry.get('id', '?')!r} is missing "
                                  + ", ".join(repr(k) for k in missing), key=missing[0], line=entry_line)
            rec: dict[str, str] = {}
            for k in REQUIRED_RULE_KEYS:
                value = entry[k]
                if value is None and k == "carc":
                    value = ""
                if not isinstance(value, str):
                    raise rules_error(path, f"{k} must be text, got {value!r}", key=k, line=line_of(entry, k))
                rec[k] = value.strip()
            rid = rec["id"]
            if not rid or not re.fullmatch(r"[A-Z0-9][A-Z0-9-]*", rid):
                raise rules_error(path, f"rule id {rid!r} must be upper-case letters, digits and '-'",
                                  key="id", line=line_of(entry, "id"))
            if rid in origins:
                first_file, first_line = origins[rid]
                raise rules_error(path, f"duplicate rule id {rid!r} (first defined in {first_file}, "
                                  f"line {first_line})", key="id", line=line_of(entry, "id"))
            for k, allowed in (("family", RULE_FAMILIES), ("severity", SEVERITIES), ("amount_basis", AMOUNT_BASES)):
                if rec[k] not in allowed:
                    raise rules_error(path, f"rule {rid}: unknown {k} {rec[k]!r}; allowed: {', '.join(allowed)}",
                                      key=k, line=line_of(entry, k))
            templates[rid] = parse_template(rec["message"], path, line_of(entry, "message"))
            fix_templates[rid] = parse_template(str(rec["fix"]), path, line_of(entry, "fix"), key="fix")
            origins[rid] = (str(path), entry_line)
            rec["rule_id"] = rec.pop("id")
            records.append(rec)
    rules = pd.DataFrame.from_records(records, columns=RULE_COLUMNS)
    return rules, origins, templates, fix_templates


def load_payer_overrides(path: Path, known_rules: set[str]) -> dict[str, dict[str, str]]:
    """rules/payers.yaml -> {payer (lower-case): {rule_id: deny|review|info|off}}."""
    doc = read_yaml(path)
    if doc is None:
        return {}
    payers = doc.get("payers", doc) if isinstance(doc, dict) else doc
    if not isinstance(payers, dict):
        raise rules_error(path, "expected a mapping payer -> {rule_id: severity}", line=line_of(doc))
    out: dict[str, dict[str, str]] = {}
    for payer, overrides in payers.items():
        payer_line = line_of(payers, payer)
        if not isinstance(payer, str) or not payer.strip():
            raise rules_error(path, f"payer name {payer!r} must be text", line=payer_line)
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise rules_error(path, "expected a mapping rule_id -> severity", key=payer, line=payer_line)
        norm = payer.strip().lower()
        if norm in out:
            raise rules_error(path, f"payer {payer!r} listed twice (names are case-insensitive)", key=payer,
                              line=payer_line)
        out[norm] = {}
        for rule_id, sev in overrides.items():
            line = line_of(overrides, rule_id)
            if rule_id not in known_rules:
                raise rules_error(path, f"payer {payer!r}: unknown rule id {rule_id!r}", key=str(rule_id), line=line)
            if not isinstance(sev, str) or sev.strip().lower() not in OVERRIDE_VALUES:
                raise rules_error(path, f"payer {payer!r}: {rule_id} must be one of {', '.join(OVERRIDE_VALUES)}, "
                                  f"got {sev!r}", key=str(rule_id), line=line)
            out[norm][rule_id] = sev.strip().lower()
    return out


def load_bundled(path: Path) -> pd.DataFrame:
    """rules/bundled.yaml -> one row per (item, procedure) pair the BUNDLED-SUPPLY rule flags."""
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise rules_error(path, "expected 'groups:' mapping group name -> {items, with_procedures, source}",
                          key="groups", line=line_of(doc) if doc is not None else None)
    groups = doc["groups"]
    frames = []
    for name, group in groups.items():
        gline = line_of(groups, name)
        if not isinstance(group, dict):
            raise rules_error(path, "expected a mapping with items, with_procedures, source", key=str(name),
                              line=gline)
        for k in ("items", "with_procedures", "source"):
            if k not in group:
                raise rules_error(path, f"group {name!r} is missing {k!r}", key=str(name), line=gline)
        if not isinstance(group["source"], str) or not group["source"].strip():
            raise rules_error(path, "source must name where the bundling rule comes from",
                              key=f"{name}.source", line=line_of(group, "source"))
        items = expand_codes(group["items"], path, f"{name}.items", line_of(group, "items"))
        procs = expand_codes(group["with_procedures"], path, f"{name}.with_procedures",
                             line_of(group, "with_procedures"))
        overlap = set(items) & set(procs)
        if overlap:
            raise rules_error(path, f"code(s) {sorted(overlap)} are both an item and a procedure",
                              key=str(name), line=gline)
        grid = pd.MultiIndex.from_product([items, procs], names=["item", "procedure"]).to_frame(index=False)
        grid["group"] = str(name)
        grid["source"] = group["source"].strip()
        frames.append(grid)
    if not frames:
        return pd.DataFrame(columns=BUNDLED_COLUMNS)
    return pd.concat(frames, ignore_index=True).drop_duplicates(["item", "procedure"]).reset_index(drop=True)


def _call_loader(module: str, function: str, argument: Path, path: Path) -> Any:
    """Call another module's rules loader, imported late so a missing module is a clear RulesError."""
    if not path.is_file():
        raise RulesError(f"{path}: rules file is missing")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RulesError(f"{path}: cannot be read because module {module} is not available ({exc})") from exc
    loader: Callable[[Path], Any] | None = getattr(mod, function, None)
    if loader is None:
        raise RulesError(f"{path}: cannot be read: {module}.{function} is missing")
    return loader(argument)
