"""Policy files: loaded by name or path, validated at load, every error naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sipwatch.config import load_settings
from sipwatch.errors import ConfigError
from sipwatch.policy import Policy, Rule, RuleOverride, load_policy, policy_path

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = sorted((ROOT / "policies").glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, error",
    [
        ("[defaults]\nfall = 0\n", "defaults.fall: Input should be greater than or equal to 1"),
        (
            '[kinds.sip_options]\nrole = "vital"\n',
            "kinds.sip_options.role: Input should be 'critical', 'major' or 'minor'",
        ),
        (
            '[probes."pbx-udp"]\nfal = 2\n',
            "probes.pbx-udp.fal: Extra inputs are not permitted",
        ),
        (
            "[probes.a]\nweight = -1\n",
            "probes.a.weight: Input should be greater than or equal to 0",
        ),
        ("[defaults]\nwindow_s = 0\n", "defaults.window_s: Input should be greater than 0"),
        (
            '[defaults]\non_standby = "skip"\n',
            "defaults.on_standby: Input should be 'judge' or 'ignore'",
        ),
        (
            'remote_failures = "maybe"\n',
            "remote_failures: Input should be 'ignore', 'yellow' or 'red'",
        ),
        ("rtt_ewma_alpha = 0\n", "rtt_ewma_alpha: Input should be greater than 0"),
        ("rtt_ewma_alpha = 1.5\n", "rtt_ewma_alpha: Input should be less than or equal to 1"),
        (
            "score_yellow_below = 60\nscore_red_below = 60\n",
            "score_red_below: must be lower than score_yellow_below (60)",
        ),
        (
            'startup_grace_s = "soon"\n',
            "startup_grace_s: Input should be a valid number, unable to parse string as a number",
        ),
        (
            "draining_max_hold_s = -5\n",
            "draining_max_hold_s: Input should be greater than or equal to 0",
        ),
        ('active_when = "vip"\n', "active_when: Input should be a valid tuple"),
        ("bogus = 1\n", "bogus: Extra inputs are not permitted"),
        (
            "[kinds]\nsip_options = 3\n",
            "kinds.sip_options: Input should be a valid dictionary or instance of RuleOverride",
        ),
    ],
)
def test_invalid_policy_names_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value) == f"invalid policy ({path}):\n  {error}"


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[defaults]\nfall = 0\nrise = 0\n")
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value).splitlines()[1:] == [
        "  defaults.fall: Input should be greater than or equal to 1",
        "  defaults.rise: Input should be greater than or equal to 1",
    ]


def test_bad_toml_missing_file_unknown_name(tmp_path: Path) -> None:
    path = write(tmp_path, "[defaults\n")
    with pytest.raises(ConfigError, match=r"^policy file .*p\.toml is not valid TOML: "):
        load_policy(path)
    with pytest.raises(ConfigError, match=r"^policy file .*nope\.toml does not exist$"):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"^no policy named 'nope' \(looked in .*policies"):
        load_policy("nope")


def test_loaded_by_name_from_the_catalog_path(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "policies").mkdir()
    write(tmp_path / "policies", "startup_grace_s = 7.0\n", name="site.toml")
    monkeypatch.setenv("SIPWATCH_CATALOG_PATH", str(tmp_path))
    assert load_policy("site").startup_grace_s == 7.0
    assert policy_path("default") == ROOT / "policies" / "default.toml"


def test_relative_path_is_taken_from_the_config_directory(tmp_path: Path) -> None:
    write(tmp_path, "startup_grace_s = 3.0\n", name="mine.toml")
    assert policy_path("mine.toml", relative_to=tmp_path) == tmp_path / "mine.toml"
    assert load_policy("mine.toml", relative_to=tmp_path).startup_grace_s == 3.0
    assert policy_path(tmp_path / "mine.toml", relative_to=Path("/elsewhere")) == (
        tmp_path / "mine.toml"
    )


def test_rule_lookup_probe_over_kind_over_defaults(tmp_path: Path) -> None:
    p = load_policy(
        write(
            tmp_path,
            "[defaults]\nfall = 3\nrise = 2\n"
            "[kinds.sip_options]\nfall = 4\nrole = 'critical'\n"
            "[probes.pbx-udp]\nfall = 6\n",
        )
    )
    assert p.rule_for("other", "drbd") == Rule(fall=3, rise=2)
    assert p.rule_for("pbx-tcp", "sip_options") == Rule(fall=4, rise=2, role="critical")
    assert p.rule_for("pbx-udp", "sip_options") == Rule(fall=6, rise=2, role="critical")


def test_policy_is_frozen() -> None:
    p = Policy()
    with pytest.raises(Exception, match="frozen"):
        p.startup_grace_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_policies_are_valid_and_never_fail_on_one_loss(path: Path) -> None:
    p = load_policy(path.stem)
    assert p.description
    for kind in ("sip_options", "sip_register", "via_vip_sip", "from_vip"):
        rule = p.rule_for("any", kind)
        assert rule.fall >= 2, f"{path.name}: {kind} fails on one lost datagram"
        assert rule.window_failures == 0 or rule.window_failures >= 2


def test_shipped_policies_exist() -> None:
    assert {p.stem for p in SHIPPED} >= {"default", "conservative", "fast"}


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "policies.md").read_text()
    keys = set(Policy.model_fields) | set(Rule.model_fields) | set(RuleOverride.model_fields)
    missing = [k for k in sorted(keys) if not re.search(rf"`\[?{k}[`.\]]", doc)]
    assert not missing, f"docs/policies.md does not document {missing}"


def test_config_policy_key(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).policy == "default"
    assert load_settings(write(tmp_path, 'policy = "fast"\n')).policy == "fast"
    with pytest.raises(ConfigError, match="  policy: String should have at least 1 character"):
        load_settings(write(tmp_path, 'policy = ""\n'))
