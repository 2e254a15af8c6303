"""Tests for the raw configuration loader, its source map and templating."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.config.loader import (
    LoadedConfig,
    load_config,
    load_var_file,
    parse_var_assignments,
    parse_yaml,
)
from reconciler.config.sourcemap import format_field
from reconciler.errors import ConfigError, ConfigIssue

BASE = """\
authorities:
  root:
    type: local
certificates:
  web:
    names:
      - web.example.test
    issuer: root
    validity: 90d
    renew_before: 30d
bindings:
  - certificate: web
    target:
      type: files
      directory: out/web
state:
  path: state.db
"""

EXTRA = """\
certificates:
  api:
    names: [api.example.test]
    issuer: root
bindings:
  - certificate: api
    target: {type: files, directory: out/api}
  - certificate: web
    target:
      type: files
      directory: out/web2
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def issues_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[ConfigIssue]:
    return excinfo.value.issues


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path so display names are short relative paths."""
    monkeypatch.chdir(tmp_path)


# --- loading and merging --------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", BASE)
    loaded = load_config(path)
    assert isinstance(loaded, LoadedConfig)
    assert loaded.data["certificates"]["web"]["renew_before"] == "30d"
    assert loaded.data["bindings"][0]["target"]["directory"] == "out/web"
    assert loaded.files == (path,)
    assert loaded.root == tmp_path
    assert loaded.data == yaml.safe_load(BASE)


def test_directory_of_two_files_is_merged(tmp_path: Path) -> None:
    config = tmp_path / "conf"
    config.mkdir()
    write(config, "b-extra.yml", EXTRA)
    write(config, "a-base.yaml", BASE)
    write(config, "c-empty.yaml", "# nothing yet\n")
    write(config, "notes.txt", "not: yaml: at all")
    write(config, ".hidden.yaml", "not: yaml: at all")  # an editor's or a tool's dotfile
    write(config, ".#a-base.yaml", "not: yaml: at all")
    loaded = load_config(config)
    assert [p.name for p in loaded.files] == ["a-base.yaml", "b-extra.yml", "c-empty.yaml"]
    assert loaded.root == config
    assert list(loaded.data["certificates"]) == ["web", "api"]
    assert [b["certificate"] for b in loaded.data["bindings"]] == ["web", "api", "web"]
    assert loaded.data["state"] == {"path": "state.db"}
    assert loaded.sources.file_of(("certificates", "api", "names")) == config / "b-extra.yml"
    assert loaded.sources.file_of(("bindings", 0)) == config / "a-base.yaml"
    assert loaded.sources.file_of(("bindings", 2)) == config / "b-extra.yml"


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(Path("certform.yaml"))
    assert "no configuration at ./certform.yaml; pass -c PATH" in str(excinfo.value)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yaml or \*\.yml files"):
        load_config(tmp_path / "empty")


def test_duplicate_entry_across_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "certificates:\n  other: {issuer: root}\n  web:\n    issuer: root\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path)
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line, issue.field) == ("b.yaml", 3, "certificates.web")
    assert "a.yaml:5" in issue.message and "b.yaml:3" in issue.message


def test_singleton_key_in_two_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "\nstate:\n  path: other.db\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path)
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line, issue.field) == ("b.yaml", 2, "state")
    assert "a.yaml:16" in issue.message and "only one file" in issue.message


def test_duplicate_key_in_one_mapping(tmp_path: Path) -> None:
    text = BASE.replace("    renew_before: 30d\n", "    renew_before: 30d\n    issuer: other\n")
    path = write(tmp_path, "certform.yaml", text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line) == ("certform.yaml", 11)
    assert "duplicate key 'issuer'" in issue.message and "line 8" in issue.message


def test_every_duplicate_key_is_reported_including_flow_style(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "a: {x: 1, x: 2}\nb: 1\nb: 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert [(i.line, i.message.split(" (")[0]) for i in issues_of(excinfo)] == [
        (1, "duplicate key 'x'"),
        (3, "duplicate key 'b'"),
    ]


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "certificates:\n  web:\n    names: [a, b\n  api: {}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [issue] = issues_of(excinfo)
    assert issue.file == "certform.yaml"
    assert issue.line == 4
    assert "expected ',' or ']'" in issue.message


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("a:\n\tb: 1\n", "certform.yaml:2:1:", "hint: YAML indents with spaces, not tabs"),
        ("a: `x`\n", "certform.yaml:1:4:", "hint: a value starting with ` must be quoted"),
        ("a: *.example.com\n", "certform.yaml:1:5:", "quote it if it is text ('*.example.com')"),
        ("a: b: c\n", "certform.yaml:1:5:", "hint: quote a value that contains ': '"),
    ],
)
def test_yaml_syntax_error_has_line_column_and_hint(
    tmp_path: Path, text: str, where: str, hint: str
) -> None:
    path = write(tmp_path, "certform.yaml", text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [line] = str(excinfo.value).splitlines()
    assert line.startswith(f"{where} invalid YAML: ") and hint in line, line


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "# list\n- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping") as excinfo:
        load_config(path)
    assert issues_of(excinfo)[0].line == 2


def test_wrong_section_type(tmp_path: Path) -> None:
    text = BASE.replace(
        "bindings:\n  - certificate: web\n", "bindings:\n  web:\n    certificate: web\n"
    )
    path = write(tmp_path, "certform.yaml", text + "providers: [files]\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    found = {(i.field, i.line): i.message for i in issues_of(excinfo)}
    assert found == {
        ("bindings", 11): "must be a list, got a mapping",
        ("providers", 19): "must be a mapping of names to entries, got a list",
    }


def test_empty_sections_are_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "certificates:\nbindings:\n")
    assert load_config(path).data == {"certificates": {}, "bindings": []}


# --- source map -----------------------------------------------------------------------


def test_locate_nested_fields(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "certform.yaml", BASE))
    sources = loaded.sources
    assert sources.locate(("certificates", "web", "renew_before")) == ("certform.yaml", 10)
    assert sources.locate(("certificates", "web", "key")) == ("certform.yaml", 5)
    assert sources.locate(("certificates", "web", "names", 0)) == ("certform.yaml", 7)
    assert sources.locate(("certificates", "nope")) == ("certform.yaml", 4)
    assert sources.locate(("bindings", 0, "target", "directory")) == ("certform.yaml", 15)
    assert sources.locate(("unknown",)) == ("certform.yaml", None)
    issue = sources.issue(("certificates", "web", "renew_before"), "too long")
    assert issue == ConfigIssue("certform.yaml", 10, "certificates.web.renew_before", "too long")


def test_locate_bindings_in_the_second_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", EXTRA)
    sources = load_config(tmp_path).sources
    assert sources.locate(("bindings", 0, "target", "directory")) == ("a.yaml", 15)
    assert sources.locate(("bindings", 1, "target", "directory")) == ("b.yaml", 7)
    assert sources.locate(("bindings", 2, "target", "directory")) == ("b.yaml", 11)
    assert sources.locate(("bindings", 2)) == ("b.yaml", 8)
    assert sources.locate(("bindings", 7)) == ("a.yaml", 11)
    assert sources.locate(("certificates", "api", "names", 0)) == ("b.yaml", 3)
    issue = sources.issue(("bindings", 2, "target", "directory"), "taken")
    assert issue == ConfigIssue("b.yaml", 11, "bindings[2].target.directory", "taken")


def test_locate_through_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = (
        "defaults: &d\n  issuer: root\n  validity: 90d\n"
        "certificates:\n  web:\n    <<: *d\n    names: [a]\n"
    )
    loaded = load_config(write(tmp_path, "c.yaml", text))
    assert loaded.data["certificates"]["web"] == {
        "issuer": "root",
        "validity": "90d",
        "names": ["a"],
    }
    assert loaded.sources.locate(("certificates", "web", "names")) == ("c.yaml", 7)
    assert loaded.sources.locate(("certificates", "web", "validity")) == ("c.yaml", 3)


def test_format_field_quotes_awkward_keys() -> None:
    assert format_field(("certificates", "a.b", "names", 2)) == 'certificates["a.b"].names[2]'


def test_large_generated_config_loads_and_locates(tmp_path: Path) -> None:
    lines = ["certificates:"]
    for i in range(5000):
        lines += [
            f"  web{i}:",
            f"    names: [web{i}.example.test]",
            "    issuer: issuing",
            "    renew_before: 30d",
        ]
    lines.append("bindings:")
    for i in range(5000):
        lines += [f"  - certificate: web{i}", f"    target: {{type: files, directory: out/web{i}}}"]
    loaded = load_config(write(tmp_path, "big.yaml", "\n".join(lines) + "\n"))
    assert len(loaded.data["certificates"]) == 5000
    assert loaded.sources.locate(("certificates", "web4321", "renew_before")) == (
        "big.yaml",
        2 + 4321 * 4 + 3,
    )
    assert loaded.sources.locate(("bindings", 4999, "target")) == ("big.yaml", len(lines))


# --- YAML semantics -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: 1.5\nc: true\nd: ~\ne: 2024-01-02\nf: '007'\ng: 0x1f\nh: yes\ni: .inf\n",
        "a: &x {k: [1, 2]}\nb: *x\nc: [*x, *x]\n",
        "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\n",
        "a: !!str 123\nb: !!binary aGVsbG8=\nc: !!set {x, y}\n",
        "a: |\n  multi\n  line\nb: >-\n  folded\n  text\n'quoted key': \"v\"\n",
        "? complex\n: 1\n1: int key\nnull: x\n",
        "--- \na: 1\n...\n",
        "",
        "# only a comment\n",
        "plain\n",
        "- 1\n- [2, 3]\n",
    ],
)
def test_parse_yaml_matches_safe_load(text: str) -> None:
    assert parse_yaml(text, "t.yaml") == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: *nope\n", "found undefined alias"),
        ("? [1, 2]\n: x\n", "unhashable"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: !!python/name:os.system\n", "could not determine a constructor"),
    ],
)
def test_parse_yaml_rejects_what_safe_load_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_yaml(text, "t.yaml")


# --- templating -----------------------------------------------------------------------


def test_template_with_var_and_var_file(tmp_path: Path) -> None:
    var_file = write(tmp_path, "vars.yaml", "domain: example.test\nteams: [web, api]\n")
    variables = {**load_var_file(var_file), **parse_var_assignments(["issuer=root", "x=a=b"])}
    assert variables["x"] == "a=b"
    text = (
        "certificates:\n"
        "{% for team in teams %}\n"
        "  {{ team }}:\n"
        "    names: [{{ team }}.{{ domain }}]\n"
        "    issuer: {{ issuer }}\n"
        "{% endfor %}\n"
    )
    loaded = load_config(write(tmp_path, "certform.yaml", text), variables)
    assert loaded.data["certificates"] == {
        "web": {"names": ["web.example.test"], "issuer": "root"},
        "api": {"names": ["api.example.test"], "issuer": "root"},
    }


def test_template_env_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFORM_TEST_DIR", "/srv/certs")
    monkeypatch.delenv("CERTFORM_TEST_UNSET", raising=False)
    text = (
        "state:\n"
        "  path: {{ env('CERTFORM_TEST_DIR') }}/state.db\n"
        "  mode: {{ env('CERTFORM_TEST_UNSET', 'x') }}\n"
    )
    loaded = load_config(write(tmp_path, "certform.yaml", text))
    assert loaded.data["state"] == {"path": "/srv/certs/state.db", "mode": "x"}


def test_template_env_function_missing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTFORM_TEST_UNSET", raising=False)
    path = write(tmp_path, "certform.yaml", "a: 1\nb: {{ env('CERTFORM_TEST_UNSET') }}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line, issue.field) == ("certform.yaml", 2, "template")
    assert "CERTFORM_TEST_UNSET" in issue.message


def test_template_missing_variable_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "a: {{ known }}\n\nb: {{ unknown }}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, {"known": 1})
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line, issue.field) == ("certform.yaml", 3, "template")
    assert "'unknown' is undefined" in issue.message


@pytest.mark.parametrize(
    "expression", ["''.__class__.__mro__", "cycler.__init__.__globals__", "env.__globals__"]
)
def test_template_sandbox_escape_is_blocked(tmp_path: Path, expression: str) -> None:
    path = write(tmp_path, "certform.yaml", f"a: 1\nb: 2\nc: {{{{ {expression} }}}}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [issue] = issues_of(excinfo)
    assert (issue.line, issue.field) == (3, "template")
    assert issue.message.startswith(
        "template tried to access an unsafe attribute (blocked by the sandbox): "
    )


def test_template_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "a: 1\nb: {% if %}\nc: 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    [issue] = issues_of(excinfo)
    assert (issue.file, issue.line, issue.field) == ("certform.yaml", 2, "template")
    assert "template syntax error" in issue.message


def test_yaml_error_after_substitution_keeps_source_line(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "a: {{ x }}\nb: {{ x }}\nc: [oops\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, {"x": "value"})
    assert issues_of(excinfo)[0].line == 4  # libyaml reports the end of the stream


def test_text_without_markup_is_not_rendered(tmp_path: Path) -> None:
    path = write(tmp_path, "certform.yaml", "a: '}}'\nb: '%}'\n")
    assert load_config(path).data == {"a": "}}", "b": "%}"}


# --- variables ------------------------------------------------------------------------


def test_parse_var_assignments() -> None:
    assert parse_var_assignments(["a=1", "b=", "a=2"]) == {"a": "2", "b": ""}


@pytest.mark.parametrize("pair", ["novalue", "=x", "bad-name=1"])
def test_parse_var_assignments_errors(pair: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_var_assignments(["ok=1", pair])
    [issue] = issues_of(excinfo)
    assert issue.file == "--var" and repr(pair) in issue.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a\n", "must be a mapping"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: [1\n", "expected ',' or ']'"),
        ("bad-name: 1\n", "not a valid variable name"),
    ],
)
def test_load_var_file_errors(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_var_file(write(tmp_path, "vars.yaml", text))


def test_load_var_file_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_var_file(tmp_path / "nope.yaml")
    assert load_var_file(write(tmp_path, "vars.yaml", "")) == {}
