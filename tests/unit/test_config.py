import os
import stat

import pytest

from connector.config import ENV_VARS, REQUIRED_ENV_VARS, ConfigError, load_config

BASE = {"CONNECTOR_ID": "c1", "CONTROL_PLANE_URL": "https://cp.example.com:8443", "CONNECTOR_TOKEN": "tok-s3cret-value"}


def test_valid_config_and_target():
    cfg = load_config(BASE)
    assert cfg.id == "c1"
    assert cfg.target == "cp.example.com:8443"
    assert not cfg.plaintext
    assert cfg.read_token() == "tok-s3cret-value"
    assert "tok-s3cret-value" not in repr(cfg)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["CONNECTOR_ID", "CONTROL_PLANE_URL"]),
        (BASE | {"CONNECTOR_CONCURRENCY": "many"}, ["CONNECTOR_CONCURRENCY"]),
        (BASE | {"CONNECTOR_CONCURRENCY": "0"}, ["CONNECTOR_CONCURRENCY"]),
        (BASE | {"CONNECTOR_HEALTH_ADDR": "8080"}, ["CONNECTOR_HEALTH_ADDR"]),
        (BASE | {"CONTROL_PLANE_URL": "ftp://x"}, ["CONTROL_PLANE_URL"]),
        (BASE | {"CONTROL_PLANE_URL": "http://cp.example.com"}, ["CONTROL_PLANE_URL"]),
        (BASE | {"CONTROL_PLANE_URL": "http://127.0.0.1:5"}, ["CONNECTOR_ALLOW_INSECURE_LOOPBACK"]),
        ({k: v for k, v in BASE.items() if k != "CONNECTOR_TOKEN"}, ["CONNECTOR_TOKEN"]),
        (BASE | {"CONNECTOR_TOKEN_FILE": "/nonexistent"}, ["CONNECTOR_TOKEN"]),
        (BASE | {"CONNECTOR_LOG_LEVEL": "loud"}, ["CONNECTOR_LOG_LEVEL"]),
        (BASE | {"CONNECTOR_TLS_CLIENT_CERT_FILE": __file__}, ["CONNECTOR_TLS_CLIENT_KEY_FILE"]),
        (BASE | {"CONNECTOR_GUARDRAILS_FILE": "/nonexistent.yaml"}, ["CONNECTOR_GUARDRAILS_FILE"]),
        (BASE | {"CONNECTOR_STATE_DIR": "/nonexistent-dir"}, ["CONNECTOR_STATE_DIR"]),
    ],
)
def test_bad_config_names_the_variable(env, names):
    with pytest.raises(ConfigError) as err:
        load_config(env)
    for name in names:
        assert name in str(err.value)
    assert "tok-s3cret-value" not in str(err.value)


def test_plaintext_loopback_needs_flag():
    cfg = load_config(
        BASE | {"CONTROL_PLANE_URL": "http://127.0.0.1:5055", "CONNECTOR_ALLOW_INSECURE_LOOPBACK": "true"}
    )
    assert cfg.plaintext and cfg.target == "127.0.0.1:5055"


def test_token_file_is_reread(tmp_path):
    token = tmp_path / "token"
    token.write_text("first-token\n")
    token.chmod(0o600)
    env = {k: v for k, v in BASE.items() if k != "CONNECTOR_TOKEN"} | {"CONNECTOR_TOKEN_FILE": str(token)}
    cfg = load_config(env)
    assert cfg.read_token() == "first-token"
    token.write_text("rotated-token")
    assert cfg.read_token() == "rotated-token"


def test_config_file_and_env_precedence(tmp_path):
    path = tmp_path / "connector.toml"
    path.write_text('CONNECTOR_CONCURRENCY = 7\nCONNECTOR_LOG_LEVEL = "debug"\n')
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    cfg = load_config(BASE | {"CONNECTOR_CONFIG_FILE": str(path), "CONNECTOR_LOG_LEVEL": "warning"})
    assert cfg.concurrency == 7
    assert cfg.log_level == "warning"
    path.write_text("CONCURRENCY = 7\n")
    with pytest.raises(ConfigError, match="CONNECTOR_CONFIG_FILE"):
        load_config(BASE | {"CONNECTOR_CONFIG_FILE": str(path)})


def test_env_var_table_is_complete():
    for name in REQUIRED_ENV_VARS:
        assert name in ENV_VARS
    assert all(name.startswith(("CONNECTOR_", "CONTROL_PLANE_")) for name in ENV_VARS)
    assert all(desc for desc in ENV_VARS.values())


NO_TOKEN = {k: v for k, v in BASE.items() if k != "CONNECTOR_TOKEN"}


def _secret_file(tmp_path, name, mode):
    path = tmp_path / name
    path.write_text("s3cret-file-content\n")
    path.chmod(mode)
    return path


def _with_client_key(key):
    return BASE | {"CONNECTOR_TLS_CLIENT_CERT_FILE": __file__, "CONNECTOR_TLS_CLIENT_KEY_FILE": str(key)}


@pytest.mark.parametrize("variable", ["CONNECTOR_TOKEN_FILE", "CONNECTOR_TLS_CLIENT_KEY_FILE"])
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666, 0o444])
def test_a_secret_file_every_user_can_read_is_refused(tmp_path, variable, mode):
    path = _secret_file(tmp_path, "secret", mode)
    env = NO_TOKEN | {variable: str(path)} if variable == "CONNECTOR_TOKEN_FILE" else _with_client_key(path)
    with pytest.raises(ConfigError) as err:
        load_config(env)
    message = str(err.value)
    assert variable in message and "chmod 600" in message and "640" in message
    assert f"{mode:04o}" in message
    assert "s3cret-file-content" not in message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o440, 0o400])
def test_a_secret_file_for_the_owner_or_its_group_is_accepted(tmp_path, mode):
    token = _secret_file(tmp_path, "token", mode)
    key = _secret_file(tmp_path, "client.key", mode)
    cfg = load_config(NO_TOKEN | {"CONNECTOR_TOKEN_FILE": str(token)})
    assert cfg.read_token() == "s3cret-file-content"
    assert load_config(_with_client_key(key)).tls_client_key_file == key


def test_a_symlink_is_judged_by_the_file_it_points_to(tmp_path):
    """Kubernetes Secret volumes are symlinks (token -> ..data/token); a symlink's own mode is always 0777."""
    data = tmp_path / "..data"
    data.mkdir()
    target = _secret_file(data, "token", 0o644)
    link = tmp_path / "token"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="CONNECTOR_TOKEN_FILE"):
        load_config(NO_TOKEN | {"CONNECTOR_TOKEN_FILE": str(link)})
    target.chmod(0o440)  # what the Helm chart's defaultMode gives
    assert load_config(NO_TOKEN | {"CONNECTOR_TOKEN_FILE": str(link)}).read_token() == "s3cret-file-content"
