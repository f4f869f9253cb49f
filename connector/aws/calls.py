"""The mutating AWS calls of one grant or revoke: made, or in a dry run only listed, so a result says
exactly what was done (or would be)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code


class CallLog:
    """Makes (or, in a dry run, only records) the mutating calls, so a result lists exactly what was done."""

    def __init__(self, client: Any, dry_run: bool) -> None:
        self.client = client
        self.dry_run = dry_run
        self.calls: list[dict[str, Any]] = []

    def __call__(self, operation: str, *, ok_codes: tuple[str, ...] = (), **params: Any) -> Any:
        self.calls.append({"operation": operation, "params": params})
        if self.dry_run:
            return None
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) in ok_codes:
                self.calls[-1]["outcome"] = error_code(exc)
                return None
            raise
