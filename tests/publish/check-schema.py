#!/usr/bin/python3
"""Checks docs/detection-message.schema.json with the reference validator
(python3-jsonschema): the schema is valid JSON Schema 2020-12, the example
and any further message files (JSON lines) validate. Skips (77) without
jsonschema: the C tests validate every message with their own subset
validator either way."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("skipped: python3-jsonschema not installed")
    sys.exit(77)


def main():
    schema_path, *instances = sys.argv[1:]
    with open(schema_path) as f:
        schema = json.load(f)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    count = 0
    for path in instances:
        with open(path) as f:
            text = f.read()
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError:
            docs = [json.loads(line) for line in text.splitlines() if line]
        for doc in docs:
            errors = sorted(validator.iter_errors(doc), key=str)
            if errors:
                for e in errors:
                    print(f"{path}: {e.json_path}: {e.message}")
                return 1
            count += 1
    print(f"schema ok, {count} message(s) valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
