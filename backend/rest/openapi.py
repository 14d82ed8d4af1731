"""The OpenAPI 3.1 document, built from the Api registry and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from backend.rest.api import Api, path_parameters


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for ``model`` (a pydantic model, ``list[model]``, or a plain schema)."""
    if model is None:
        return {"type": "object"}
    if isinstance(model, dict):
        return model
    origin = getattr(model, "__origin__", None)
    if origin is list:
        return {"type": "array", "items": _schema(model.__args__[0], components)}
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"type": "object"}


def build_document(api: Api, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI document of every operation of ``api`` (and its documented extra paths)."""
    components: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {"detail": {}, "code": {"type": "string"}},
            "required": ["detail"],
        }
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in api.operations:
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"} if name in op.str_params else {"type": "integer"},
            }
            for name in path_parameters(op.path)
        ]
        if op.query is not None:
            for name, prop in op.query.model_json_schema().get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": False,
                                   "schema": prop})
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{op.handler.__name__}",
            "tags": list(op.tags),
            "parameters": parameters,
            "responses": {
                str(op.status): {
                    "description": "Success",
                    "content": op.produces if op.produces is not None else {
                        "application/json": {"schema": _schema(op.response, components)}},
                },
                "default": {
                    "description": "Error",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        if op.auth == "user":
            entry["security"] = [{"bearer": []}]
        elif op.auth == "user_or_device":  # or no token at all, with seed 000's device_id
            entry["security"] = [{"bearer": []}, {}]
            parameters.append({"name": "device_id", "in": "query", "required": False,
                               "schema": {"type": "string"},
                               "description": "A mobile device's id, when no bearer token"})
        if op.raw_body is not None:
            entry["requestBody"] = {"required": True, "content": op.raw_body}
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(op.body, components)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    for path, extra in api.extra_paths.items():
        paths.setdefault(path, {}).update(extra)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }
