from pathlib import Path

import pytest

from server.config import ConfigError, load


def test_defaults_run_embedded_single_node() -> None:
    settings = load(env={})
    assert settings.twfido.mode == "embedded"
    assert settings.store.backend == "memory"
    assert settings.server.origin == "http://127.0.0.1:8080"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "ebas.toml"
    path.write_text('[server]\nport = 9000\n[twfido]\ntime_limit = 120\n')
    settings = load(path, env={"EBAS_LOGIN_PORT": "9100", "EBAS_LOGIN_TWFIDO_POLL_INTERVAL": "5"})
    assert settings.server.port == 9100
    assert settings.twfido.time_limit == 120
    assert settings.twfido.poll_interval == 5.0


def test_server_shortcuts_in_environment(tmp_path: Path) -> None:
    settings = load(env={"EBAS_LOGIN_HOST": "::1", "EBAS_LOGIN_DATA_DIR": str(tmp_path)})
    assert settings.server.host == "::1"
    assert settings.server.data_dir == tmp_path
    assert settings.server.origin == "http://[::1]:8080"


@pytest.mark.parametrize(
    "env, named",
    [
        ({"EBAS_LOGIN_TWFIDO_TIME_LIMIT": "10"}, "twfido.time_limit"),
        ({"EBAS_LOGIN_TWFIDO_TIME_LIMIT": "abc"}, "twfido.time_limit"),
        ({"EBAS_LOGIN_PORT": "70000"}, "server.port"),
        ({"EBAS_LOGIN_TWFIDO_MODE": "cloud"}, "twfido.mode"),
        ({"EBAS_LOGIN_STORE_BACKEND": "etcd"}, "store.backend"),
        ({"EBAS_LOGIN_TWFIDO_NOPE": "1"}, "twfido.nope"),
        ({"EBAS_LOGIN_BOGUS_X": "1"}, "EBAS_LOGIN_BOGUS_X"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(env=env)
    assert named in str(caught.value)


def test_unknown_file_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ebas.toml"
    path.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="server.prot"):
        load(path, env={})


def test_aes_key_never_echoed() -> None:
    secret = "c2VjcmV0LWtleS10aGF0LWlzLXdyb25nLWxlbmd0aA=="
    with pytest.raises(ConfigError) as caught:
        load(env={"EBAS_LOGIN_TWFIDO_AES_KEY": secret})
    assert "twfido.aes_key" in str(caught.value)
    assert secret not in str(caught.value)


def test_moi_mode_requires_service_id_and_key() -> None:
    with pytest.raises(ConfigError, match="twfido.aes_key"):
        load(env={"EBAS_LOGIN_TWFIDO_MODE": "moi", "EBAS_LOGIN_TWFIDO_API_URL": "https://fidoapi-test.moi.gov.tw"})
