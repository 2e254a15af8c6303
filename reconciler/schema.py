"""The JSON Schema of the configuration, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_SCHEMA_PATH = Path("schemas/certform.schema.json")
SCHEMA_ID = "https://certform.dev/schemas/certform.schema.json"


def schema_text() -> str:
    # Imported here: the CLI imports this module for its default path at start-up.
    from reconciler.config.models import CertformConfig

    schema = CertformConfig.model_json_schema(by_alias=True, mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = DEFAULT_SCHEMA_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text())
