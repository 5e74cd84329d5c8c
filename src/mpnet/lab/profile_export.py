"""Write a :class:`~mpnet.config.model.Profile` back as profile YAML (the loader's schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mpnet.config.model import Profile
from mpnet.core.clock import TimeField


def profile_to_document(profile: Profile) -> dict[str, Any]:
    """The profile as plain data in the schema of ``profiles/*.yaml``.

    The ``network`` block (exchange-layer proxy and TLS) is left out: lab profiles point at
    127.0.0.1, and the command line or the config file decide how to reach them.
    """
    doc: dict[str, Any] = {"name": profile.name, "title": profile.title}
    if profile.rest:
        health = profile.rest.health
        health_doc: dict[str, Any] = {
            "method": health.method,
            "path": health.path,
            "expect_status": health.expect_status,
        }
        if health.body is not None:
            health_doc["body"] = health.body
        if health.expect_json_keys:
            health_doc["expect_json_keys"] = list(health.expect_json_keys)
        if health.expect_json is not None:
            health_doc["expect_json"] = health.expect_json
        if health.status_endpoint:
            health_doc["status_endpoint"] = True
        rest: dict[str, Any] = {"base_url": profile.rest.base_url}
        if profile.rest.headers:
            rest["headers"] = dict(profile.rest.headers)
        rest["health"] = health_doc
        if profile.rest.time is not None:
            rest["time"] = {"method": profile.rest.time.method, "path": profile.rest.time.path}
        if profile.rest.server_time is not None:
            rest["server_time"] = _time_field(profile.rest.server_time)
        doc["rest"] = rest
    spec = profile.websocket
    if spec:
        ws: dict[str, Any] = {"url": spec.url}
        if spec.bootstrap:
            ws["bootstrap"] = {
                "method": spec.bootstrap.method,
                "path": spec.bootstrap.path,
                "endpoint": spec.bootstrap.endpoint,
                "token": spec.bootstrap.token,
                "query": dict(spec.bootstrap.query),
            }
        if spec.headers:
            ws["headers"] = dict(spec.headers)
        if spec.welcome is not None:
            ws["welcome"] = spec.welcome
        ws["subscribe"] = list(spec.subscribe)
        if spec.ack_match is not None:
            ws["ack_match"] = spec.ack_match
        if spec.error_match is not None:
            ws["error_match"] = spec.error_match
        ws["data_match"] = spec.data_match
        if spec.ping:
            ws["ping"] = (
                {"frame": True}
                if spec.ping.frame
                else {"send": spec.ping.send, "expect": spec.ping.expect}
            )
            if spec.ping.server_time is not None:
                ws["ping"]["server_time"] = _time_field(spec.ping.server_time)
        if spec.server_ping:
            ws["server_ping"] = {
                "field": spec.server_ping.field,
                "reply_field": spec.server_ping.reply_field,
            }
        if spec.compression:
            ws["compression"] = spec.compression
        if spec.event_time is not None:
            ws["event_time"] = _time_field(spec.event_time, with_kind=True)
        doc["websocket"] = ws
    limit = profile.rate_limit
    if limit is not None:
        block: dict[str, Any] = {"requests_per_s": limit.requests_per_s}
        if limit.weight_header is not None:
            block["weight_header"] = limit.weight_header
            block["weight_limit"] = limit.weight_limit
            block["weight_window_s"] = limit.weight_window_s
        doc["rate_limit"] = block
    return doc


def _time_field(time_field: TimeField, *, with_kind: bool = False) -> dict[str, str]:
    block = {"path": time_field.path, "unit": time_field.unit}
    if with_kind:
        block["kind"] = time_field.kind
    return block


def write_profile(profile: Profile, path: Path) -> Path:
    """Write one profile file; returns its path."""
    text = yaml.safe_dump(
        profile_to_document(profile), sort_keys=False, allow_unicode=True, width=100
    )
    path.write_text(f"# Written by mpnet lab: {profile.title} simulated on 127.0.0.1\n{text}")
    return path
