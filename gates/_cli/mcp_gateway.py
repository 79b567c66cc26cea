"""``reinstate mcp-gateway AGENT -- UPSTREAM_COMMAND…``."""

from __future__ import annotations

import click

from gates._cli._common import ctx


@click.command("mcp-gateway")
@click.argument("agent")
@click.argument("upstream", nargs=-1, type=click.UNPROCESSED)
@click.option("--http", "use_http", is_flag=True,
              help="Serve MCP over streamable HTTP (at http://HOST:PORT/mcp) instead of "
                   "stdin/stdout.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --http, the address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8790, show_default=True,
              help="With --http, the port to listen on (0: any free port, printed).")
@click.option("--review-timeout", "review_timeout", type=click.FloatRange(min=0),
              default=300.0, show_default=True,
              help="Seconds a review-routed call waits for a person before it is denied.")
def command(agent: str, upstream: tuple[str, ...], use_http: bool, host: str, port: int,
            review_timeout: float) -> int:
    """Serve AGENT's MCP tools through its controls: start UPSTREAM_COMMAND (an MCP server
    on stdio) and answer as an MCP server in front of it.

    Tools the permissions do not list are hidden. Each call is decided by the runtime
    guard (permissions, review routing, acceptance, the mode, read at every call): allowed
    calls go to the upstream, denied ones are tool errors naming the rule, review-routed
    ones wait for `reinstate review approve|reject`. The session is logged as the guard's
    run log. Exit 3 when the upstream cannot start or stops.
    """
    import logging

    import anyio

    from gates._response.guard import Guard
    from gates._response.mcp_gateway import McpGateway, say_on_stderr

    # The SDK logs what it recovers from (a line of the upstream's that is not JSON-RPC)
    # with a traceback; the gateway says what matters in its own lines.
    logging.getLogger("mcp").addHandler(logging.NullHandler())
    logging.getLogger("mcp").propagate = False
    c = ctx()
    workspace = c.workspace(containing=True)  # a guard: [notify] is not what it reads
    workspace.require_agent(agent)
    given = click.get_current_context().get_parameter_source
    if not use_http and any(given(name) is click.core.ParameterSource.COMMANDLINE
                            for name in ("host", "port")):
        raise click.UsageError("--host and --port apply to --http only")
    gateway = McpGateway(Guard(workspace, agent), list(upstream),
                         review_timeout_s=review_timeout, actor=c.actor, say=say_on_stderr)
    try:
        anyio.run(lambda: gateway.serve("http" if use_http else "stdio", host=host,
                                        port=port))
    finally:
        gateway.guard.close()
    return 0
