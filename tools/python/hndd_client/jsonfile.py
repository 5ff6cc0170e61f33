"""Reading the client's JSON files (cluster files, credentials) with one error handling."""
from __future__ import annotations

import json


def read_json_file(path: str, what: str, error: type[Exception], not_json_hint: str = ""):
    """The parsed JSON of `path`. An unreadable file raises `error("<path>: cannot read the <what>:
    <reason>")`, malformed JSON `error("<path>: not JSON<not_json_hint>: <reason>")`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror}") from None
    except ValueError as e:
        raise error(f"{path}: not JSON{not_json_hint}: {e}") from None
