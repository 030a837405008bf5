"""``/openapi.json`` describes the request bodies the validators accept, from one source (issue 22).

The request models are generated from the field tables of ``mailproxyd.core.models``; these
tests read the document a client reads, from a running API server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.integration.api.conftest import World

REFERENCE = Path(__file__).parents[3] / "docs" / "reference.md"
#: What a JSON Schema can say about a value beyond its type.
CONSTRAINTS = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "propertyNames",
        "additionalProperties",
        "$ref",
        "items",
    }
)
#: Request models with a partial-update twin, and the fields only a full definition has.
TWINS = {"AccountIn": {"id", "tenant_id"}, "TenantIn": {"id"}, "InstanceIn": set()}


@pytest.fixture
def document(world: World) -> dict[str, Any]:
    r = world.anon.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _without_null(schema: dict[str, Any]) -> Any:
    """A property's schema without the ``null`` alternative that makes it optional."""
    variants = schema.get("anyOf")
    if variants is None:
        return schema
    rest = [v for v in variants if v != {"type": "null"}]
    return rest[0] if len(rest) == 1 else {**schema, "anyOf": rest}


def _facts(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Every JSON Schema keyword used in ``schema`` (alternatives and items included)."""
    schema = _resolve(doc, schema)
    found = set(schema)
    for variant in schema.get("anyOf", ()):
        found |= _facts(doc, variant)
    return found


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"


def test_every_request_model_and_its_patch_twin_have_the_same_fields(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    body_refs = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for ops in document["paths"].values()
        for op in ops.values()
        if "requestBody" in op
    }
    patches = {name for name in body_refs if name.endswith("Patch")}
    assert patches == {"AccountPatch", "TenantPatch", "InstancePatch"}
    for full, only_full in TWINS.items():
        patch = full.removesuffix("In") + "Patch"
        if full == "InstanceIn":
            continue  # no full definition route; compared with the validator's fields below
        assert set(schemas[full]["properties"]) - only_full == set(schemas[patch]["properties"])
        assert only_full <= set(schemas[full]["properties"])
        assert not schemas[patch].get("required")  # everything optional in a patch
        for name, prop in schemas[patch]["properties"].items():
            # The same constraints: a patch field is its In field that may be null.
            assert _without_null(prop) == _without_null(schemas[full]["properties"][name]), name


def test_patch_twins_carry_what_the_validators_accept() -> None:
    from mailproxyd.api import schemas
    from mailproxyd.core.models import account, instance, tenant

    def fields(model: Any) -> set[str]:
        import msgspec

        return {f.encode_name for f in msgspec.structs.fields(model)}

    assert fields(schemas.AccountIn) == account._ACCOUNT_FIELDS
    assert fields(schemas.AccountPatch) == account._ACCOUNT_FIELDS - {"id", "tenant_id"}
    assert fields(schemas.TenantIn) == tenant._TENANT_FIELDS
    assert fields(schemas.TenantPatch) == tenant._TENANT_FIELDS - {"id"}
    assert fields(schemas.InstancePatch) == instance._INSTANCE_FIELDS


def _reference_fields(section: str, following: str) -> list[str]:
    text = REFERENCE.read_text(encoding="utf-8")
    part = text[text.index(f"### {section} ") : text.index(f"### {following} ")]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", part, flags=re.MULTILINE)


def test_every_message_item_field_appears_with_its_constraints(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    add = schemas["AddMessagesIn"]["properties"]["messages"]
    item = _resolve(document, add["items"])
    props = item["properties"]
    listed = _reference_fields("6.2", "6.3")
    assert len(listed) == 18 and set(listed) == set(props), set(listed) ^ set(props)
    assert set(item["required"]) == {"id", "from", "to", "subject"}
    for name in listed:
        facts = _facts(document, props[name])
        assert "type" in facts or "anyOf" in facts or "$ref" in facts, name
        if name not in ("body", "return_path", "from"):
            assert facts & CONSTRAINTS, f"{name}: no constraint in {props[name]}"

    def prop(name: str) -> Any:
        return _without_null(props[name])

    assert prop("id")["maxLength"] == 255 and "pattern" in prop("id")
    to = next(v for v in props["to"]["anyOf"] if v.get("type") == "array")
    assert to["maxItems"] == 1000 and to["items"]["minLength"] == 1
    assert prop("subject")["minLength"] == 1 and prop("subject")["pattern"] == "^[^\\r\\n]*$"
    assert set(prop("content_type")["enum"]) == {"plain", "html", "text/plain", "text/html"}
    priority = prop("priority")["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 3} in priority
    assert any("low" in v.get("enum", ()) for v in priority)
    assert prop("deferred_ts")["minimum"] == 0 and prop("deferred_ts")["type"] == "number"
    assert prop("batch_code")["maxLength"] == 64
    headers = prop("headers")
    assert headers["propertyNames"]["maxLength"] == 76
    assert "pattern" in headers["propertyNames"]
    attachments = _resolve(document, prop("attachments")["items"])
    assert set(attachments["properties"]) == set(_reference_fields("6.3", "6.4"))
    assert attachments["required"] == ["filename", "storage_path"]
    fetch = _without_null(attachments["properties"]["fetch_mode"])
    assert set(fetch["enum"]) == {"endpoint", "http_url", "base64", "filesystem"}
    md5 = _without_null(attachments["properties"]["content_md5"])
    assert md5["pattern"] == "^(?:[0-9a-fA-F]{32})$"


def test_account_bounds_in_the_document_are_the_validators(
    document: dict[str, Any], world: World
) -> None:
    # The document's bounds are those the API enforces: at the bound accepted, past it a 422.
    props = document["components"]["schemas"]["AccountIn"]["properties"]
    base = {"id": "bounds", "host": "smtp.example.com", "port": 587}
    for name in ("port", "batch_size", "max_concurrent", "ttl"):
        schema = _without_null(props[name])
        low, high = schema["minimum"], schema["maximum"]
        for value, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            r = world.a.post("/account", json={**base, name: value})
            assert (r.status_code == 200) is ok, (name, value, r.text)
            if not ok:
                assert r.json()["field"] == name
    assert set(_without_null(props["tls_mode"])["enum"]) == {
        "none",
        "opportunistic",
        "starttls",
        "implicit",
    }
