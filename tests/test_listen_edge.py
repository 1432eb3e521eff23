"""``dicomnet listen``'s PROXY protocol and audit settings, from flags and TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dicomnet.cli.listen_edge import parse_host_port
from dicomnet.cli.listen_service import ServiceConfig, load_config
from dicomnet.cli.main import main


def test_toml_keys_become_the_settings(tmp_path: Path) -> None:
    config = tmp_path / "listen.toml"
    config.write_text(
        "[listen]\n"
        "proxy-protocol = true\n"
        'trusted-proxy = ["10.0.0.5", "10.1.0.0/16", "2001:db8::/32"]\n'
        'audit-syslog = "audit.example.org:6514"\n'
        'audit_transport = "tls"\n'
        'audit-source-id = "node1"\n'
    )
    settings = ServiceConfig(**load_config(config))
    assert settings.proxy_protocol is True
    assert settings.trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "2001:db8::/32")
    assert settings.audit_syslog == "audit.example.org:6514"
    assert settings.audit_transport == "tls"
    assert settings.audit_source_id == "node1"
    single = tmp_path / "single.toml"
    single.write_text('trusted-proxy = "10.0.0.5"\n')
    assert load_config(single) == {"trusted_proxies": ("10.0.0.5",)}


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--trusted-proxy", "10.0.0.0/33"], "ADDR/PREFIX"),
        (["--trusted-proxy", "proxy.example.org"], "ADDR/PREFIX"),
        (["--audit-syslog", "collector-without-port"], "HOST:PORT"),
        (["--audit-syslog", "host:99999"], "HOST:PORT"),
        (["--audit-transport", "tcp"], "udp"),
    ],
)
def test_bad_values_are_refused_before_serving(arguments: list[str], complaint: str) -> None:
    result = CliRunner().invoke(main, ["listen", "--port", "0", *arguments])
    assert result.exit_code == 2
    assert complaint in result.output


def test_bad_trusted_proxy_in_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "listen.toml"
    config.write_text('[listen]\ntrusted-proxy = ["not-an-address"]\n')
    result = CliRunner().invoke(main, ["listen", "--config", str(config), "--port", "0"])
    assert result.exit_code == 2
    assert "ADDR/PREFIX" in result.output


def test_collector_addresses() -> None:
    assert parse_host_port("audit.example.org:514") == ("audit.example.org", 514)
    assert parse_host_port("[2001:db8::5]:6514") == ("2001:db8::5", 6514)
    with pytest.raises(ValueError):
        parse_host_port(":514")
