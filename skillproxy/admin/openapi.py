"""The admin API's OpenAPI document, generated from the one route table in `routes`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skillproxy.admin.routes import AdminRoute


def openapi_document(routes: Iterable[AdminRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        template = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"\{(\w+)", route.path)
            ],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "default": {"description": "An error: {error: {message, type, code}}"},
            },
        }
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body.model_json_schema()}},
            }
        paths.setdefault("/admin" + template, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "skillproxy admin API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
