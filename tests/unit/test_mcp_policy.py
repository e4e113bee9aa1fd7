"""The mcp tool's policies (``allowed_tools``, ``require_approval``) and the outbound policy's address check,
with literal addresses (nothing is looked up on the network)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from assistd.protocol.common import ParamValueError
from assistd.protocol.response_mcp import allows, mcp_tool, needs_approval
from assistd.tools.mcp import McpError, Sealer, check_host

READ_ONLY = {"readOnlyHint": True}


def _policy(**given: Any) -> dict[str, Any]:
    tool = {"type": "mcp", "server_label": "s", "server_url": "https://x.test/mcp", **given}
    return mcp_tool(0, tool).policy()


def test_allowed_tools_by_name_or_filter() -> None:
    assert allows(_policy(), "anything", None)
    assert allows(_policy(allowed_tools=["add"]), "add", None)
    assert not allows(_policy(allowed_tools=["add"]), "drop", None)
    read_only = _policy(allowed_tools={"read_only": True})
    assert allows(read_only, "list", READ_ONLY) and not allows(read_only, "drop", None)


def test_require_approval_policies() -> None:
    assert needs_approval(_policy(), "add", None)  # "always" by default, as on OpenAI
    assert not needs_approval(_policy(require_approval="never"), "add", None)
    never_add = _policy(require_approval={"never": {"tool_names": ["add"]}})
    assert not needs_approval(never_add, "add", None) and needs_approval(never_add, "drop", None)
    always_drop = _policy(require_approval={"always": {"tool_names": ["drop"]}})
    assert needs_approval(always_drop, "drop", None) and not needs_approval(always_drop, "add", None)


def test_bad_mcp_tool_is_refused_naming_it() -> None:
    with pytest.raises(ParamValueError) as missing:
        mcp_tool(2, {"type": "mcp", "server_label": "s"})
    assert missing.value.param == "tools[2].server_url"
    with pytest.raises(ParamValueError) as connector:
        mcp_tool(0, {"type": "mcp", "server_label": "s", "connector_id": "connector_gmail"})
    assert connector.value.param == "tools[0].server_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/mcp",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/mcp",
        "http://192.168.0.7/mcp",
        "http://[::1]:9000/mcp",
        "http://[fd00::1]/mcp",
        "http://0.0.0.0/mcp",
    ],
)
def test_non_public_addresses_are_refused_unless_listed(url: str) -> None:
    with pytest.raises(McpError) as refused:
        asyncio.run(check_host(url, []))
    assert refused.value.error["type"] == "http_error"
    assert "ASSISTD_MCP_ALLOWED_HOSTS" in refused.value.message
    host = url.split("//", 1)[1].split("/", 1)[0]
    asyncio.run(check_host(url, [host]))  # listed as host:port (or host)


def test_public_address_and_scheme() -> None:
    asyncio.run(check_host("https://93.184.216.34/mcp", []))
    with pytest.raises(McpError):
        asyncio.run(check_host("file:///etc/passwd", []))


def test_sealed_headers_open_with_the_same_key_only(tmp_path: Any) -> None:
    sealed = Sealer("one key", tmp_path).seal({"Authorization": "Bearer x"})
    assert "Bearer" not in sealed
    assert Sealer("one key", tmp_path).unseal(sealed) == {"Authorization": "Bearer x"}
    assert Sealer("another", tmp_path).unseal(sealed) == {}
    # Without a configured key: one made once in the data directory, the same for every process.
    made = Sealer(None, tmp_path).seal({"A": "b"})
    assert Sealer(None, tmp_path).unseal(made) == {"A": "b"}
    assert (tmp_path / "mcp-secret.key").stat().st_mode & 0o777 == 0o600
