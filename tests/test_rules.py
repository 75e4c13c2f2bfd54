"""The rule book: the real rules/ folder loads, and broken files fail naming file, key and line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scrubber.errors import RulesError
from scrubber.rules import RuleBook, expand_codes, load_bundled, parse_template
from scrubber.schemas import RULE_FAMILIES, SEVERITIES

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
README = RULES / "README.md"


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return RuleBook.load(RULES)


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A private copy of rules/ to break."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    return target


def test_real_rules_load(book: RuleBook):
    rules = book.rules
    assert list(rules.columns) == ["rule_id", "family", "severity", "title", "message", "fix", "carc",
                                   "amount_basis", "source"]
    assert rules["rule_id"].is_unique
    assert set(rules["family"]) <= set(RULE_FAMILIES)
    assert set(rules["severity"]) <= set(SEVERITIES)
    mine = {"MUE-LINE", "MUE-DOS", "MUE-NONE", "PTP-IND0", "PTP-IND1", "PTP-BYPASS", "BUNDLED-STATUS",
            "BUNDLED-SUPPLY", "STATUS-T-BUNDLED", "CODE-UNKNOWN", "CODE-NOT-PAYABLE", "CODE-CARRIER-PRICED",
            "CODE-RESTRICTED", "CODE-MEASUREMENT", "MOD-PCTC-INVALID", "MOD-BILAT-INVALID", "MOD-ASST-NOT-PAID",
            "MOD-COSURG-INVALID", "DUP-BATCH", "DUP-HISTORY"}
    assert mine <= set(rules["rule_id"])
    assert book.rule("PTP-IND0")["severity"] == "deny"
    for group in ("ncci_associated", "x_modifiers", "repeat", "anatomic"):
        assert book.modifiers[group]
    assert "59" in book.modifier_set("x_modifiers") and "76" in book.modifier_set("repeat")
    assert "99213" in book.em_codes
    assert not book.pos.empty
    assert book.frequency


def test_readme_documents_every_rule_id(book: RuleBook):
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z0-9-]+)` \|", text, flags=re.MULTILINE))
    assert set(book.rules["rule_id"]) <= documented, "rules/README.md misses rule ids"
    assert documented <= set(book.rules["rule_id"]), "rules/README.md lists ids not in the catalog"


def test_bundled_items(book: RuleBook):
    pairs = set(zip(book.bundled["item"], book.bundled["procedure"], strict=True))
    assert {("J2003", "20553"), ("J2001", "20610"), ("J2004", "64450")} <= pairs
    assert not any(item == "J3301" for item, _ in pairs)       # steroids stay billable (billing-domain 9.3)


def test_severity_for_payer_overrides(book: RuleBook):
    ids = pd.Series(["MUE-NONE", "PTP-BYPASS", "MUE-NONE", "PTP-BYPASS", "DUP-BATCH"])
    payers = pd.Series(["Acme_Advantage", "acme_advantage", "medicare", None, "unknown_plan"])
    assert book.severity_for(ids, payers).tolist() == ["off", "review", "info", "info", "deny"]
    # a per-hit default replaces the catalog severity; the payer override still wins
    defaults = pd.Series(["review", None, "deny", None, None])
    assert book.severity_for(ids, payers, defaults).tolist() == ["off", "review", "deny", "info", "deny"]
    with pytest.raises(KeyError, match="NOPE"):
        book.severity_for(pd.Series(["NOPE"]), pd.Series(["medicare"]))


def test_off_is_a_word_not_a_boolean(book: RuleBook):
    assert book.payer_overrides["acme_advantage"]["MUE-NONE"] == "off"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def test_unknown_severity_names_file_key_and_line(rules_copy: Path):
    f = rules_copy / "catalog" / "units.yaml"
    _edit(f, "    severity: info", "    severity: informational")
    with pytest.raises(RulesError) as err:
        RuleBook.load(rules_copy)
    msg = str(err.value)
    assert str(f) in msg and "key 'severity'" in msg and f"line {_line_of(f, 'informational')}" in msg
    assert "MUE-NONE" in msg


def test_duplicate_id_across_files(rules_copy: Path):
    f = rules_copy / "catalog" / "duplicate.yaml"
    _edit(f, "id: DUP-HISTORY", "id: MUE-LINE")
    # files are read in name order: duplicate.yaml first, so units.yaml holds the second definition
    with pytest.raises(RulesError, match=r"units.yaml, line \d+, key 'id': duplicate rule id 'MUE-LINE' "
                                         r"\(first defined in .*duplicate.yaml, line \d+\)"):
        RuleBook.load(rules_copy)


def test_missing_key_and_unknown_family_and_basis(rules_copy: Path):
    f = rules_copy / "catalog" / "code_status.yaml"
    _edit(f, "    carc: CO-181\n", "")
    with pytest.raises(RulesError, match=r"code_status.yaml, line \d+, key 'carc': rule 'CODE-UNKNOWN' is missing"):
        RuleBook.load(rules_copy)
    shutil.copy(RULES / "catalog" / "code_status.yaml", f)
    _edit(f, "    family: code_status", "    family: codes")
    with pytest.raises(RulesError, match="unknown family 'codes'"):
        RuleBook.load(rules_copy)
    shutil.copy(RULES / "catalog" / "code_status.yaml", f)
    _edit(f, "    amount_basis: line", "    amount_basis: everything")
    with pytest.raises(RulesError, match="unknown amount_basis 'everything'"):
        RuleBook.load(rules_copy)


def test_bad_placeholder_in_message(rules_copy: Path):
    f = rules_copy / "catalog" / "bundling.yaml"
    _edit(f, "{related_hcpcs} billed for\n      the same patient, date and provider ({detail}). The modifier",
          "{related_code} billed for\n      the same patient, date and provider ({detail}). The modifier")
    with pytest.raises(RulesError, match=r"bundling.yaml, line \d+, key 'message': unknown placeholder "
                                         r"\{related_code\}"):
        RuleBook.load(rules_copy)


def test_template_parts_and_format_specs():
    assert parse_template("{hcpcs} x {units}!", Path("f.yaml"), 3) == [("", "hcpcs"), (" x ", "units"), ("!", None)]
    with pytest.raises(RulesError, match=r"f.yaml, line 3, key 'message'.*format spec"):
        parse_template("{units:.2f}", Path("f.yaml"), 3)


def test_yaml_syntax_error_names_the_line(rules_copy: Path):
    f = rules_copy / "payers.yaml"
    f.write_text("medicare: {}\nacme:\n  MUE-NONE: off\n   PTP-BYPASS: review\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"payers.yaml, line 4: not valid YAML"):
        RuleBook.load(rules_copy)


def test_payer_override_errors(rules_copy: Path):
    f = rules_copy / "payers.yaml"
    f.write_text("medicare: {}\nplan_b:\n  MUE-NOPE: off\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"payers.yaml, line 3, key 'MUE-NOPE': payer 'plan_b': unknown rule id"):
        RuleBook.load(rules_copy)
    f.write_text("plan_b:\n  MUE-NONE: maybe\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"line 2, key 'MUE-NONE'.*deny, review, info, off"):
        RuleBook.load(rules_copy)
    f.write_text("plan_b:\n  MUE-NONE: 'off'\nPlan_B: {}\n", encoding="utf-8")
    with pytest.raises(RulesError, match="listed twice"):
        RuleBook.load(rules_copy)


def test_missing_files_are_errors(rules_copy: Path):
    (rules_copy / "bundled.yaml").unlink()
    with pytest.raises(RulesError, match=r"bundled.yaml: rules file is missing"):
        RuleBook.load(rules_copy)
    with pytest.raises(RulesError, match="rules folder not found"):
        RuleBook.load(rules_copy / "nope")


def test_missing_frequency_file_is_an_error(rules_copy: Path):
    (rules_copy / "frequency.yaml").unlink()
    with pytest.raises(RulesError, match=r"frequency.yaml: rules file is missing"):
        RuleBook.load(rules_copy)


def test_code_ranges(tmp_path: Path):
    f = tmp_path / "x.yaml"
    assert expand_codes(["20600-20604", "J2001", "0001A"], f, "k", 1) == [
        "20600", "20601", "20602", "20603", "20604", "J2001", "0001A"]
    assert expand_codes(["G0402-G0404"], f, "k", 1) == ["G0402", "G0403", "G0404"]
    with pytest.raises(RulesError, match="bad code range"):
        expand_codes(["20611-20600"], f, "k", 1)
    with pytest.raises(RulesError, match="must be a quoted string"):
        expand_codes([20600], f, "k", 1)


def test_bundled_file_errors(tmp_path: Path):
    f = tmp_path / "bundled.yaml"
    f.write_text("groups:\n  lido:\n    items: ['J2001']\n    with_procedures: ['J2001']\n    source: x\n")
    with pytest.raises(RulesError, match="both an item and a procedure"):
        load_bundled(f)
    f.write_text("groups:\n  lido:\n    items: ['J2001']\n    source: x\n")
    with pytest.raises(RulesError, match=r"bundled.yaml, line 2, key 'lido': group 'lido' is missing 'with_proc"):
        load_bundled(f)


def test_modifier_groups_the_checks_need(rules_copy: Path):
    f = rules_copy / "modifiers.yaml"
    _edit(f, "  repeat:\n", "  repeats:\n")
    with pytest.raises(RulesError, match=r"modifiers.yaml, key 'groups': the checks need .*group\(s\) repeat"):
        RuleBook.load(rules_copy)
