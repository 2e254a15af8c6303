"""The config front end reads each YAML file once (issue 11, "one config pass").

One event-driven builder (``reconciler.config.yamlbuild``) yields a file's data
and its line index together, finds duplicate keys, applies ``<<`` merge keys
and enforces the resource limits.  These tests pin that: one parser per file,
the index is over the very objects of the data, merged fields are located
where they are written, duplicates are found inside merges, and values the
safe loader refuses are file:line errors rather than tracebacks.  They also
pin that validation decides which findings to drop from their paths, never
from their message text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.config import yamlbuild
from reconciler.config.loader import load_config, parse_document, parse_yaml
from reconciler.config.validate import load_and_validate
from reconciler.config.yamlbuild import DocumentBuilder
from reconciler.errors import ConfigError, ConfigIssue
from tests.conftest import EXAMPLE, Workspace


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _issues(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as excinfo:
        parse_yaml(text, "t.yaml")
    return [(i.line, i.field, i.message) for i in excinfo.value.issues]


# --- one pass -------------------------------------------------------------------------


def test_each_file_is_parsed_once_and_locating_parses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFORM_CACHE", "off")  # the parse itself (tests/test_parse_cache.py)
    parsers: list[str] = []
    real = yamlbuild.event_parser

    def counting(text: str) -> Any:
        parsers.append(text)
        return real(text)

    monkeypatch.setattr(yamlbuild, "event_parser", counting)
    monkeypatch.setattr(yaml, "compose", None)  # no second reader of any kind
    monkeypatch.setattr(yaml, "load", None)
    (tmp_path / "a.yaml").write_text(EXAMPLE)
    (tmp_path / "b.yaml").write_text("providers:\n  files-only: {type: files}\n")
    loaded = load_config(tmp_path)
    assert len(parsers) == 2
    sources = loaded.sources
    assert sources.locate(("certificates", "web", "renew_before")) == ("a.yaml", 20)
    assert sources.locate(("bindings", 1, "target", "directory")) == ("a.yaml", 31)
    assert sources.locate(("providers", "files-only", "type")) == ("b.yaml", 2)
    assert len(parsers) == 2


def test_the_index_is_over_the_data_the_same_builder_built() -> None:
    parsed = DocumentBuilder().build("a: {b: [1, {c: x}]}\n")
    assert parsed.index.root is parsed.data
    assert parsed.data == {"a": {"b": [1, {"c": "x"}]}}
    assert parsed.index.line_of(("a", "b", 1, "c")) == 1


def test_value_on_its_own_line_and_its_key(tmp_path: Path) -> None:
    """A scalar is located at its own line; a duplicate names its key's line."""
    parsed = parse_document("a:\n  1\nb:\n  - x\nc: {d:\n  2}\n", "t.yaml")
    assert [parsed.index.line_of(p) for p in (("a",), ("b",), ("b", 0), ("c", "d"))] == [
        2,
        3,
        4,
        6,
    ]
    assert _issues("a:\n  1\na: 2\n") == [(3, "a", "duplicate key 'a' (first on line 1)")]


# --- merge keys -----------------------------------------------------------------------

_MERGES = """\
base: &base
  issuer: root
  validity: 90d
  key: ec-p256
extra: &extra
  validity: 30d
  tags: {team: web}
chain: &chain
  <<: *base
  renew_before: 10d
certificates:
  own:
    <<: *base
    validity: 7d
  listed:
    <<: [*extra, *base]
  later:
    <<: *base
    <<: *extra
  chained:
    <<: *chain
"""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("certificates", "own", "validity"), 14),  # explicit key beats the merged one
        (("certificates", "own", "issuer"), 2),  # merged: where *base writes it
        (("certificates", "listed", "validity"), 6),  # earlier mapping of a list wins
        (("certificates", "listed", "key"), 4),
        (("certificates", "listed", "tags", "team"), 7),
        (("certificates", "later", "validity"), 6),  # the later << key wins
        (("certificates", "chained", "renew_before"), 10),
        (("certificates", "chained", "key"), 4),  # through a merge of a merge
        (("certificates", "chained", "missing"), 20),
    ],
)
def test_merged_fields_are_located_where_they_are_written(path: tuple[str, ...], line: int) -> None:
    parsed = parse_document(_MERGES, "t.yaml")
    assert parsed.data == yaml.safe_load(_MERGES)
    assert parsed.index.line_of(path) == line


def test_merge_overrides_are_not_duplicates_but_duplicates_inside_merges_are() -> None:
    assert parse_yaml("d: &d {a: 1, b: 2}\nm:\n  <<: *d\n  a: 3\n", "t.yaml")["m"] == {
        "a": 3,
        "b": 2,
    }
    text = "d: &d\n  a: 1\n  a: 2\nm:\n  <<: *d\n  b: 1\n  b: 2\n  <<: *d\n"
    assert _issues(text) == [
        (3, "d.a", "duplicate key 'a' (first on line 2)"),
        (7, "m.b", "duplicate key 'b' (first on line 6)"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "x: &a 1\n<<: *a\n",
            1,
            "expected a mapping or list of mappings for merging, but found scalar",
        ),
        ("m:\n  <<: [{a: 1},\n    2]\n", 3, "expected a mapping for merging, but found scalar"),
        ("a: <<\n", 1, "could not determine a constructor for the tag"),
        ("? [1, 2]\n: x\n", 1, "found unhashable key"),
    ],
)
def test_refused_merges_and_keys_name_their_line(text: str, line: int, message: str) -> None:
    [(found_line, field, found)] = _issues(text)
    assert (found_line, field) == (line, "")
    assert found.startswith(message)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)


# --- values the safe loader refuses -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nx: !!bool maybe\n", "invalid bool value 'maybe'"),
        ("a: 1\nx: !!timestamp abc\n", "invalid timestamp value 'abc'"),
        ("a: 1\nx: !!int abc\n", "invalid int value 'abc'"),
        ("a: 1\nx: 2024-13-45\n", "invalid timestamp value '2024-13-45'"),
        ("a: 1\nx: !!map abc\n", "expected a mapping node, but found scalar"),
        ("a: 1\nx: !!str {a: 1}\n", "expected a scalar node, but found mapping"),
        ("a: 1\nx: !!omap [{a: 1, b: 2}]\n", "expected a mapping of length 1, but found 2"),
        ("a: 1\nx: !local 1\n", "could not determine a constructor for the tag '!local'"),
    ],
)
def test_refused_values_are_errors_at_their_line(text: str, message: str) -> None:
    [(line, field, found)] = _issues(text)
    assert (line, field) == (2, "")
    assert found.startswith(message), found


@pytest.mark.parametrize(
    "text",
    [
        "a: !!set {x, y}\nb: !!omap [{x: 1}, {y: 2}]\nc: !!pairs [{x: 1}, {x: 2}]\n",
        "a: ! 12\nb: !!float 1\nc: !!null x\n=: 1\n!!str 1: x\n",
        "a: &s !!set {x}\nb: *s\n",
        "%TAG !e! tag:yaml.org,2002:\n---\na: !e!int 12\n",
    ],
)
def test_tags_mean_what_safe_load_makes_of_them(text: str) -> None:
    assert parse_yaml(text, "t.yaml") == yaml.safe_load(text)


def test_a_bad_bool_tag_through_the_cli_is_a_clean_error(workspace: Workspace) -> None:
    """``!!bool maybe`` made the safe constructor raise a KeyError (a traceback)."""
    text = EXAMPLE.replace("    tags: {team: web}\n", "    tags: {team: !!bool maybe}\n")
    workspace.write(text)
    result = workspace.run("validate")
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    assert "certform.yaml:21: invalid bool value 'maybe'" in result.err


# --- validation decides on paths, not message text --------------------------------------


def _validate_issues(tmp_path: Path, text: str) -> list[ConfigIssue]:
    (tmp_path / "certform.yaml").write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_and_validate(tmp_path / "certform.yaml")
    return excinfo.value.issues


def test_references_to_a_malformed_entry_are_not_reported_as_unknown(tmp_path: Path) -> None:
    text = EXAMPLE.replace("    path_length: 0\n", "    path_length: 0\n    colour: blue\n")
    text = text.replace("  - certificate: api\n", "  - certificate: nope\n")
    issues = _validate_issues(tmp_path, text)
    fields = [issue.field for issue in issues]
    # the shape error, and the truly unknown certificate; not "unknown authority
    # 'issuing'" for the two certificates that name the malformed authority
    assert fields == ["authorities.issuing.colour", "bindings[1].certificate"]
    assert issues[1].message.startswith("unknown certificate 'nope'")


def test_parent_and_binding_references_to_malformed_entries(tmp_path: Path) -> None:
    text = EXAMPLE.replace("    key: ec-p384\n", "    key: ec-p384\n    colour: blue\n").replace(
        "    key: rsa-2048\n", "    key: rsa-2048\n    colour: red\n"
    )
    issues = _validate_issues(tmp_path, text)
    # authorities.issuing.parent names the malformed root, bindings[1] the
    # malformed api certificate: neither is "unknown"
    assert [issue.field for issue in issues] == [
        "authorities.root.colour",
        "certificates.api.colour",
    ], issues


def test_validator_messages_come_without_pydantic_prefixes(tmp_path: Path) -> None:
    text = EXAMPLE.replace("    validity: 90d\n    renew_before: 30d\n", "    validity: soon\n")
    [issue] = _validate_issues(tmp_path, text)
    assert issue.field == "certificates.web.validity"
    assert not issue.message.startswith(("Value error", "Assertion failed")), issue.message
