"""Issue 10, item 4: templates cannot read certform's secrets through ``env()``, and
run under resource limits (a huge number, string or loop is an error at its
line, within seconds, never a hang or a traceback)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.childenv import remember_secret_names
from reconciler.config import template_limits
from reconciler.config.templating import render_config_text
from reconciler.errors import ConfigError
from tests.conftest import EXAMPLE, Workspace

SECRET_URL = "https://hooks.example.test/secret-token-0005"
WEBHOOK = """\
notifications:
  sinks: [{type: webhook, url_env: HOOK_URL}]
"""


def _tag_config(expression: str, extra: str = "") -> str:
    config = EXAMPLE.replace("tags: {team: web}", f'tags: {{team: "{expression}"}}')
    assert config != EXAMPLE
    return config + extra


TAG_LINE = EXAMPLE.splitlines().index("    tags: {team: web}") + 1


def _state_files(workspace: Workspace) -> dict[str, bytes]:
    directory = workspace.root / ".certform"
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("variable", "value", "extra", "reason"),
    [
        ("CERTFORM_MASTER_KEY", None, "", "it holds a secret of certform"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-0006", "", "it holds a secret of certform"),
        ("HOOK_URL", SECRET_URL, WEBHOOK, "the configuration names it in a *_env setting"),
    ],
)
def test_env_refuses_secrets_at_the_template_line(
    workspace: Workspace, variable: str, value: str | None, extra: str, reason: str
) -> None:
    if value is not None:
        workspace.env[variable] = value
    secret = workspace.env[variable]
    workspace.ok("apply", "--auto-approve")  # a state to keep intact
    before = _state_files(workspace)
    deployed = (workspace.root / "out/web/cert.pem").read_bytes()

    workspace.write(_tag_config(f"{{{{ env('{variable}') }}}}", extra))
    for command in (("validate",), ("plan", "--json"), ("apply", "--auto-approve"), ("show",)):
        result = workspace.run(*command)
        assert result.code == 1, (command, result.text)
        assert f"certform.yaml:{TAG_LINE}: template: env('{variable}') is refused" in result.err
        assert reason in result.err
        assert secret not in result.text
        assert "Traceback" not in result.text
    assert _state_files(workspace) == before
    assert all(secret.encode() not in data for data in before.values())
    assert (workspace.root / "out/web/cert.pem").read_bytes() == deployed


def test_env_still_reads_ordinary_variables(workspace: Workspace) -> None:
    workspace.env["TEAM"] = "platform"
    workspace.write(_tag_config("{{ env('TEAM') }}", WEBHOOK))
    workspace.ok("validate")
    assert '"team": "platform"' in workspace.ok("plan", "--json").out


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 9**(9**9) }}", "the number would have over 16,384 bits"),
        ('{{ "a"*1000000000 }}', "the repeated value would be 1,000,000,000 characters"),
        ('{{ "a"*100000 * 100000 }}', "the repeated value would be 10,000,000,000 characters"),
    ],
)
def test_resource_hungry_templates_fail_fast_at_their_line(
    workspace: Workspace, template: str, message: str
) -> None:
    workspace.write(_tag_config(template.replace('"', "'")))
    started = time.monotonic()
    result = workspace.run("plan", timeout=30)
    assert time.monotonic() - started < 10
    assert result.code == 1, result.text
    assert f"certform.yaml:{TAG_LINE}: template: template over its resource limits" in result.err
    assert message in result.err
    assert "Traceback" not in result.text and "MemoryError" not in result.text
    assert _state_files(workspace) == {}


# --- in process: every other way to ask for too much ----------------------------------


def _render(text: str, path: Path) -> str:
    return render_config_text(text, str(path), "t.yaml", {})


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a'|center(1000000000) }}",
        "{{ '%1000000000s'|format('a') }}",
        "{{ '%1000000000s' % 'a' }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ 'a'.ljust(1000000000) }}",
        "{{ 'a'.zfill(1000000000) }}",
        "{{ ('a'*100000).replace('a', 'a'*100000) }}",
        "{{ ('a'*100000)|replace('a', 'a'*100000) }}",
        "{{ range(100000)|join('a'*100000) }}",
        "{{ ('x\\n'*100000)|indent(1000) }}",
        "{{ [1]|batch(1000000000, 0)|list }}",
        "{{ [1]|slice(1000000000)|list }}",
        "{{ [1]|tojson(indent=1000000000) }}",
        "{{ lipsum(1000000000) }}",
        "{{ [1]*1000000000 }}",
        "{{ 2**100000 }}",
        "{% set l = [1] %}{% for i in range(64) %}{{ l.extend(l) }}{% endfor %}",
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "{% for i in range(100000) %}{{ 'a'*1000 }}{% endfor %}",
    ],
)
def test_amplifiers_are_refused_quickly(template: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        _render("a: 1\nb: " + template + "\n", tmp_path / "t.yaml")
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith("t.yaml:2: template: template over its resource limits")


def test_endless_loops_hit_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_limits, "RENDER_SECONDS", 0.5)
    started = time.monotonic()
    nested = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(ConfigError, match=r"t\.yaml:3: .*longer than 0\.5 s"):
        _render("a: 1\n\n" + nested + "\n", tmp_path / "t.yaml")
    assert time.monotonic() - started < 3


def test_recursion_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recursion too deep"):
        _render("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", tmp_path / "t.yaml")


def test_ordinary_templates_render_as_before(tmp_path: Path) -> None:
    text = (
        "{{ 2**100 }} {{ 'ab'|center(6) }} {{ '%5s'|format('x') }} {{ '{:>4}'.format(1) }} "
        "{{ range(3)|join(',') }} {{ [[1],[2]]|sum(start=[]) }} "
        "{% for k, v in {'k': 1}.items() %}{{ k }}{{ v }}{{ loop.length }}{{ loop.last }}"
        "{% endfor %} {{ 'a' ~ 1 ~ 'b' }} {{ [1,2,3]|batch(2)|list }} {{ '%s-%d' % ('a', 3) }} "
        "{{ 'abc'|replace('b', 'xx') }} {{ {'a': 1}|tojson }} {{ 'x'*3 }} {{ [0]*2 }}"
    )
    assert _render(text, tmp_path / "t.yaml") == (
        "1267650600228229401496703205376   ab       x    1 0,1,2 [1, 2] k11True a1b "
        '[[1, 2], [3]] a-3 axxc {"a": 1} xxx [0, 0]'
    )


def test_later_templates_refuse_the_configs_secret_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nginx snippets render at apply time, after the configuration named its secrets.
    monkeypatch.setenv("CERTFORM_TEST_SNIPPET_SECRET", "snippet-secret-0007")
    remember_secret_names(frozenset({"CERTFORM_TEST_SNIPPET_SECRET"}))
    with pytest.raises(ConfigError) as caught:
        _render("add_header X {{ env('CERTFORM_TEST_SNIPPET_SECRET') }};", tmp_path / "s.j2")
    assert "is refused" in str(caught.value) and "snippet-secret-0007" not in str(caught.value)


def test_nginx_snippet_cannot_write_the_master_key(workspace: Workspace) -> None:
    (workspace.root / "api.conf.j2").write_text("# {{ env('CERTFORM_MASTER_KEY') }}\n")
    workspace.write("""\
authorities:
  root: {type: private-root, subject: {common_name: Snippet Root}}
providers:
  web: {type: nginx, test_command: ['true'], reload_command: ['true']}
certificates:
  api: {names: [api.example.test], issuer: root}
bindings:
  - certificate: api
    target:
      type: nginx
      provider: web
      certificate_path: tls/api.crt
      key_path: tls/api.key
      snippet: {template: api.conf.j2, path: tls/api.conf}
""")
    result = workspace.run("apply", "--auto-approve")
    assert result.code == 1, result.text
    assert "env('CERTFORM_MASTER_KEY') is refused" in result.text
    assert workspace.env["CERTFORM_MASTER_KEY"] not in result.text
    assert not (workspace.root / "tls/api.conf").exists()
    assert "Traceback" not in result.text
