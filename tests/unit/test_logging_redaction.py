import io
import json

from connector.logging import REDACTED, configure_logging, get_logger, redact, register_secret


def test_redacts_by_key_and_by_shape():
    register_secret("planted-connector-token-123")
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = get_logger("t")
    log.info(
        "event",
        token="abc",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        note="header Authorization: Bearer eyJhbGciOi.xyz and planted-connector-token-123",
        key_id="AKIAIOSFODNN7EXAMPLE",
        eks="k8s-aws-v1.aHR0cHM6Ly9zdHM",
        job_id="job-1",
        token_file="/var/run/token",
    )
    line = stream.getvalue()
    record = json.loads(line)
    assert record["token"] == REDACTED
    assert record["aws_secret_access_key"] == REDACTED
    assert "planted-connector-token-123" not in line
    assert "eyJhbGciOi" not in line
    assert "AKIAIOSFODNN7EXAMPLE" not in line
    assert "k8s-aws-v1.aHR0" not in line
    assert record["job_id"] == "job-1"
    assert record["token_file"] == "/var/run/token"  # a path is not a secret


def test_redacts_exceptions():
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise RuntimeError("failed with SessionToken=FQoGZXIvYXdzEBcaDAbCdEfGhIjKlMnOpQr")
    except RuntimeError:
        get_logger("t").exception("boom")
    assert "FQoGZXIvYXdzEBcaDAbCdEfGhIjKlMnOpQr" not in stream.getvalue()


def test_nested_structures():
    out = redact({"outer": {"password": "p", "list": ["Bearer zzz.yyy"]}})
    assert out == {"outer": {"password": REDACTED, "list": [REDACTED]}}


def test_library_warnings_through_the_standard_logging_module_are_redacted_too():
    import io
    import logging

    from connector.logging import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("botocore.credentials").warning(
        "refresh failed: x-amz-security-token=IQoJb3JpZ2luX2VjEJr%s Authorization: Bearer abc.def.ghi",
        "AAAAAAAAAAAAAAAA",
    )
    text = stream.getvalue()
    assert "refresh failed" in text and "IQoJb3JpZ2lu" not in text and "abc.def.ghi" not in text


def test_library_lines_are_json_objects_when_the_log_is_json_and_text_at_a_console():
    """A log shipper parses every line of a JSON log: botocore's warnings (with their cause, one line, redacted)
    come out as JSON objects like the connector's own; a console gets the readable text form."""
    import io
    import json
    import logging

    from connector.logging import configure_logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        raise RuntimeError("AssumeRole denied; Authorization: Bearer abc.def.ghi")
    except RuntimeError:
        logging.getLogger("botocore.credentials").warning("Refreshing temporary credentials failed", exc_info=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert line["event"] == "Refreshing temporary credentials failed" and line["level"] == "warning"
    assert line["logger"] == "botocore.credentials" and line["timestamp"].endswith("Z")
    assert line["error"].startswith("RuntimeError: AssumeRole denied") and "abc.def.ghi" not in line["error"]

    console = io.StringIO()
    configure_logging("info", "console", stream=console)
    logging.getLogger("botocore.credentials").warning("Refreshing temporary credentials failed")
    assert console.getvalue().startswith("WARNING botocore.credentials: Refreshing")
    configure_logging("info", "json")
