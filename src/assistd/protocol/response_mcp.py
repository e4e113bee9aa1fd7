"""The Responses API's ``mcp`` tool: its request shape, and the policies it states (which of a server's tools
the model may see, which need approval). Executed by the server (``engine/response_mcp.py``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from .common import ParamValueError, RequestModel

__all__ = ["McpToolParam", "allows", "mcp_tool", "needs_approval"]


class McpToolFilterParam(RequestModel):
    tool_names: list[str] | None = None
    read_only: bool | None = None


class McpApprovalFilterParam(RequestModel):
    always: McpToolFilterParam | None = None
    never: McpToolFilterParam | None = None


class McpToolParam(RequestModel):
    """``{"type": "mcp", "server_label", "server_url", "allowed_tools", "headers", "require_approval"}``."""

    type: Literal["mcp"]
    server_label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    server_url: str = Field(min_length=1, max_length=2048)
    server_description: str | None = Field(default=None, max_length=4096)
    allowed_tools: list[str] | McpToolFilterParam | None = None
    headers: dict[str, str] | None = None
    # An OAuth token, sent as ``Authorization: Bearer ...`` (sealed as the headers are).
    authorization: str | None = None
    require_approval: Literal["always", "never"] | McpApprovalFilterParam | None = None

    def secret_headers(self) -> dict[str, str]:
        """The headers to send, ``authorization`` among them: what is sealed, never stored in clear."""
        headers = dict(self.headers or {})
        if self.authorization is not None:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers

    def policy(self) -> dict[str, Any]:
        """What the run keeps in clear: the server and its policies, without its headers."""
        return self.model_dump(exclude={"headers", "authorization"}, exclude_none=True)

    def echoed(self) -> dict[str, Any]:
        """The tool as the response shows it back: the headers' values are never shown."""
        shown = self.model_dump(exclude={"authorization"}, exclude_none=True)
        shown["headers"] = {name: "<redacted>" for name in self.headers} if self.headers else None
        shown.setdefault("allowed_tools", None)
        shown["require_approval"] = shown.get("require_approval") or "always"
        return shown


_TOOL = TypeAdapter(McpToolParam)


def mcp_tool(index: int, tool: dict[str, Any]) -> McpToolParam:
    """``tools[index]`` as an mcp tool, or the refusal naming its parameter (``tools[0].server_url``)."""
    if tool.get("connector_id") is not None or tool.get("tunnel_id") is not None:
        raise ParamValueError(
            "connectors and tunnels are OpenAI's services: give the MCP server's server_url.",
            f"tools[{index}].server_url",
        )
    try:
        return _TOOL.validate_python(tool)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"] if not str(part)[:1].isupper() and "[" not in str(part)]
        param = f"tools[{index}]" + "".join(f".{part}" for part in loc[:1])
        if error["type"] == "extra_forbidden":
            raise ParamValueError("unrecognized argument.", param) from None
        if error["type"] == "missing":
            raise ParamValueError(f"Missing required parameter: '{param}'.", param) from None
        raise ParamValueError(str(error["msg"]), param) from None


def _matches(rule: dict[str, Any] | None, name: str, annotations: dict[str, Any] | None) -> bool:
    if not rule:
        return False
    if rule.get("tool_names") is not None and name in rule["tool_names"]:
        return True
    read_only = bool((annotations or {}).get("readOnlyHint") or (annotations or {}).get("read_only_hint"))
    return rule.get("read_only") is not None and rule["read_only"] == read_only


def allows(policy: dict[str, Any], name: str, annotations: dict[str, Any] | None) -> bool:
    """Whether the server's tool ``name`` is one the model may see (``allowed_tools``)."""
    allowed = policy.get("allowed_tools")
    if allowed is None:
        return True
    if isinstance(allowed, list):
        return name in allowed
    return _matches(allowed, name, annotations)


def needs_approval(policy: dict[str, Any], name: str, annotations: dict[str, Any] | None) -> bool:
    """Whether a call of ``name`` waits for the client's approval (``require_approval``, ``always`` by
    default as on OpenAI; with a filter, a tool named by ``never`` does not, one named by ``always`` does,
    and any other does)."""
    rule = policy.get("require_approval") or "always"
    if isinstance(rule, str):
        return rule == "always"
    if _matches(rule.get("never"), name, annotations):
        return False
    if _matches(rule.get("always"), name, annotations):
        return True
    return rule.get("never") is not None or rule.get("always") is None
