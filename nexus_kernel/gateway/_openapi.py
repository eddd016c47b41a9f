"""The OpenAPI 3.1 document, built from the route table and the pydantic models of each operation.

Nothing is written by hand per endpoint: a route registered with :func:`~._base.route` whose methods
carry :func:`~._base.operation` appears here with its parameters, body, answers and security; a method's
own docstring, when it has one, becomes the operation's ``description`` (the live route's close codes).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel

from .._version import __version__
from ._base import routes
from ._models import Error

__all__ = ["openapi"]

_METHODS = ("get", "post", "put", "patch", "delete")
_NAME_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        is_list = prop.get("type") == "array" or any(p.get("type") == "array" for p in prop.get("anyOf", []))
        if is_list:  # sent comma-separated: describe as a string
            items: dict[str, Any] = prop.get("items") or next((p["items"] for p in prop.get("anyOf", []) if "items" in p), {})
            enum = items.get("enum")
            # empty parts are skipped by the server ("mean,,max"), so the pattern lets them through too
            pattern = f"^,*({'|'.join(enum)})(,+({'|'.join(enum)}))*,*$" if enum else None
            prop = {"type": "string", "description": prop.get("description", "comma-separated list")}
            if pattern:
                prop["pattern"] = pattern
        out.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                    "schema": prop})
    return out


def openapi(settings: Any = None, prefix: str = "") -> dict[str, Any]:
    components: dict[str, Any] = {}
    error_ref = _schema(Error, components)
    paths: dict[str, Any] = {}
    for path, spec in routes.items():
        item: dict[str, Any] = {}
        params = [{"name": p, "in": "path", "required": True,
                   "schema": _NAME_SCHEMA if p == "name" else {"type": "string", "maxLength": 64}}
                  for p in re.findall(r"\{(\w+)\}", path)]
        for method in _METHODS:
            op = getattr(getattr(spec.handler, method, None), "_op", None)
            if op is None:
                continue
            entry: dict[str, Any] = {"summary": op.summary, "tags": [spec.tag],
                                     "operationId": f"{method}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"}
            doc = getattr(spec.handler, method).__doc__  # its own docstring only (the live route's close codes)
            if doc:
                entry["description"] = inspect.cleandoc(doc)
            parameters = list(params)
            if op.query is not None:
                parameters += _query_parameters(op.query)
            if parameters:
                entry["parameters"] = parameters
            if op.body is not None:
                # a body whose every field has a default may be left out: the server reads it as {}
                entry["requestBody"] = {"required": any(f.is_required() for f in op.body.model_fields.values()),
                                        "content": {"application/json": {"schema": _schema(op.body, components)}}}
            elif op.raw_body is not None:
                entry["requestBody"] = op.raw_body
            ok: dict[str, Any] = {"description": "OK"}
            if op.response is not None:
                schema = _schema(op.response, components)
                ok["content"] = {c: {"schema": schema if c == "application/json" else {"type": "string"}}
                                 for c in op.content}
            elif op.content:
                ok["content"] = {c: {"schema": {"type": "string"} if c != "application/json" else {"type": "object"}}
                                 for c in op.content}
            responses: dict[str, Any] = {str(op.status): ok}
            err = {"content": {"application/json": {"schema": error_ref}}}
            for code, why in (("400", "Bad request"), ("404", "Not found"), ("409", "Conflict"),
                              ("413", "Body too large"), ("415", "Unsupported media type"),
                              ("422", "Invalid input"), ("429", "Rate limited"), ("503", "Unavailable")):
                responses[code] = {"description": why, **err}
            if op.action is not None:
                responses["401"] = {"description": "Missing or invalid credentials", **err}
                responses["403"] = {"description": f"Needs permission '{op.action}'", **err}
                entry["security"] = [{"bearer": []}]
            entry["responses"] = responses
            item[method] = entry
        if item:
            paths[prefix.rstrip("/") + path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Nexus Stream gateway", "version": __version__,
                 "description": "Streams, ingest, queries, live results. Errors: {error, detail, field}."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "A JWT or an API key (nxk_...)"}}},
    }
