"""docs/ stands on its own, and PROTOCOL.md's examples are real messages."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from tradewire.protocol.messages import MessageType, new_decoder
from tradewire.protocol.replies import REPLIES, ErrorEnvelope

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _examples() -> list[tuple[str, str]]:
    """(request, reply) line pairs of PROTOCOL.md's example blocks."""
    lines = (DOCS / "PROTOCOL.md").read_text().splitlines()
    pairs, request = [], None
    for line in lines:
        if line.startswith("> {"):
            request = line[2:]
        elif line.startswith("< {") and request is not None:
            pairs.append((request, line[2:]))
            request = None
    return pairs


def test_docs_cite_no_document_outside_the_repository() -> None:
    for path in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        text = path.read_text()
        assert "DESIGN" not in text and "§" not in text, path.name


def test_every_message_type_has_an_example() -> None:
    shown = {json.loads(request)["type"] for request, _ in _examples()}
    assert shown == {t.value for t in MessageType}


@pytest.mark.parametrize(("request_line", "reply_line"), _examples())
def test_examples_are_valid_messages_and_replies(request_line: str, reply_line: str) -> None:
    message = new_decoder().decode(request_line.replace("...", ""))
    reply = json.loads(reply_line)
    assert reply.get("id") == json.loads(request_line).get("id")
    kind = MessageType(message.__struct_config__.tag)
    types = (ErrorEnvelope,) if reply["type"] == "error" else REPLIES[kind]
    errors = []
    for cls in types:
        try:
            msgspec.convert(reply, cls)
            return
        except msgspec.ValidationError as exc:
            errors.append(str(exc))
    raise AssertionError(errors)


def test_package_data_ships_every_dashboard_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "src" / "tradewire"
    shipped = {path for pattern in patterns["tradewire"] for path in package.glob(pattern)}
    static = {path for path in (package / "dashboard" / "static").rglob("*") if path.is_file()}
    assert static and static <= shipped, sorted(str(p) for p in static - shipped)


def test_asyncapi_is_linked_and_protocol_sections_exist() -> None:
    text = (DOCS / "PROTOCOL.md").read_text()
    for section in (
        "## Wire style",
        "## Sessions",
        "## Results",
        "## Data collection",
        "## Strategy document",
    ):
        assert section in text
    assert re.search(r"\(asyncapi\.yaml\)", text)


def test_openapi_declares_metrics_as_text(tmp_path: Path) -> None:
    from tests.helpers import make_settings
    from tradewire import WebSocketAPIServer
    from tradewire.http.app import create_http_app

    app = create_http_app(WebSocketAPIServer(settings=make_settings(tmp_path)))
    responses = app.openapi()["paths"]["/metrics"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["text/plain"]
    assert "/" not in app.openapi()["paths"]  # the dashboard page is not part of the API


def test_make_run_installs_no_dev_tools(tmp_path: Path) -> None:
    """`make run` on a fresh machine installs the package only (dry run with an absent venv)."""
    import subprocess

    venv = tmp_path / "venv"
    plan = subprocess.run(
        ["make", "-n", "run", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install --quiet -e ." in plan and "[dev]" not in plan
    assert f"{venv}/bin/tradewire serve" in plan
