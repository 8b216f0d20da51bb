"""The OpenAPI document of the emulator (aioims/emulator/openapi.py): a valid
OpenAPI 3.1 document, in step with the application's routes, served at
``GET /openapi.json`` and copied, unchanged, to docs/openapi.json."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from aioims.emulator.app import build_app
from aioims.emulator.context import Services
from aioims.emulator.faults import API_PREFIX, FaultInjector
from aioims.emulator.identity import Directory
from aioims.emulator.openapi import ERROR_CODES, openapi_document, openapi_text

ROOT = Path(__file__).resolve().parents[2]
DOCS_COPY = ROOT / "docs" / "openapi.json"
EMULATOR_SOURCES = sorted((ROOT / "aioims" / "emulator").glob("*.py"))
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

DOC = openapi_document()


def app() -> web.Application:
    """The emulator's application, with stand-in services (only routes are needed)."""
    stand_in: Any = None
    services = Services(
        store=stand_in, storage=stand_in, users=Directory(), faults=FaultInjector(), worker=stand_in
    )
    return build_app(services)


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, op


def test_docs_copy_is_up_to_date() -> None:
    assert DOCS_COPY.read_text(encoding="utf-8") == openapi_text(), (
        "docs/openapi.json drifted: run `python -m aioims.emulator.openapi > docs/openapi.json`"
    )


def test_module_prints_the_document() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aioims.emulator.openapi"],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert result.stdout.decode("utf-8") == openapi_text()
    assert b"RuntimeWarning" not in result.stderr  # runpy: "found in sys.modules"


def test_fresh_document_each_call() -> None:
    document = openapi_document()
    document["components"]["schemas"]["Image"]["properties"].clear()
    assert openapi_document() == DOC


def test_valid_openapi_31() -> None:
    OpenAPIV31SpecValidator(DOC).validate()
    assert DOC["openapi"] == "3.1.0"


def test_structure() -> None:
    """A minimal meta-check on top of the validator: schemas are valid JSON Schema
    2020-12, every ``$ref`` resolves, ids are unique, path parameters match the
    templates, every API operation has the region header, the bearer scheme and
    the error envelope, every admin one is marked emulator-only."""
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    text = openapi_text()
    for target in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = DOC
        for part in target.split("/"):
            node = node[part]
    ids = [op.get("operationId") for *_, op in operations() if "operationId" in op]
    assert len(ids) == len(set(ids))
    parameters = DOC["components"]["parameters"]
    for method, path, op in operations():
        names = {parameters[p["$ref"].rsplit("/", 1)[1]]["name"] for p in op.get("parameters", [])}
        for placeholder in re.findall(r"\{(\w+)\}", path):
            assert placeholder in names, (method, path)
        if path.startswith(API_PREFIX):
            assert {"x-regionid", "requestInfo"} <= names, (method, path)
            assert "security" not in op  # the document's bearerAuth applies
            assert op["responses"]["400"] == {"$ref": "#/components/responses/Error"}
            assert op["operationId"], (method, path)
        else:
            assert op["x-emulator-only"] is True and op["security"] == [], (method, path)
    assert DOC["security"] == [{"bearerAuth": []}]
    assert DOC["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_routes_and_document_match() -> None:
    """Every route the application registers is documented and vice versa; an API
    operation's id is its handler's name (the fault rules' endpoint name)."""
    documented = {(method, path): op for method, path, op in operations()}
    registered = {}
    for route in app().router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" and not path.startswith(API_PREFIX):
            continue  # aiohttp's automatic HEAD of add_get (admin API)
        registered[(route.method, path)] = route.handler
    assert set(registered) == set(documented)
    for (method, path), handler in registered.items():
        if path.startswith(API_PREFIX):
            name = getattr(handler, "__name__", "")
            assert documented[(method, path)]["operationId"] in (name, f"{name}_head")


def test_error_codes_cover_the_emulator() -> None:
    """Every ``IMG.*`` code the emulator's sources mention is in the error enum."""
    used = set()
    for source in EMULATOR_SOURCES:
        used |= set(re.findall(r"IMG\.[A-Za-z]+(?:\.[A-Za-z]+)*", source.read_text("utf-8")))
    assert used - {"IMG.x"} <= set(ERROR_CODES)
    assert DOC["components"]["schemas"]["ErrorEnvelope"]["properties"]["code"]["enum"] == list(
        ERROR_CODES
    )


@pytest.mark.timeout(60)
async def test_served_at_openapi_json() -> None:
    async with TestClient(TestServer(app())) as client:
        answer = await client.get("/openapi.json")  # no authentication
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert await answer.json() == DOC
