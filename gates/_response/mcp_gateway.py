"""The MCP gateway: an agent's MCP tools, behind the controls the gate verified.

The gateway is an MCP server (stdio, or streamable HTTP) in front of one upstream MCP server
that it starts as a subprocess over stdio. It lists the upstream's tools minus those the
agent's permissions do not know (deny by default), and decides each ``tools/call`` with a
:class:`~gates._response.guard.Guard`, one guarded run per MCP session (so the run log is
the guard's, which ``investigate`` and ``ingest`` read): an allowed call goes to the
upstream and its result is logged; a denied one is a tool error naming the rule, the
upstream never called; a review-routed one waits in the review queue until a person
decides (or the timeout denies it), and a reviewer's edited arguments are decided again
before they go up (and are what the session's later calls are decided after). The mode
is the guard's, read at every call, so a ``reinstate contain`` flips the very next call.

When the upstream says its tools changed (``notifications/tools/list_changed``), the gateway
reads its tool list again, filters it by the permissions as at every listing (a new tool
they do not know is hidden and reported), and, when what its clients are shown changed,
passes the notification on to every session that has spoken to it (a session that never
sent a request has no list to refresh). The gateway says it sends such notifications
(``tools.listChanged`` in its capabilities).
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import socket
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.shared.session import RequestResponder

from evalsuite import ReinstateError, check_json_schema, schema_violation
from gates._errors import GatesError
from gates._response.guard import Guard, GuardDecision, GuardedRun
from gates._response.review_edits import release_held, vouched_item
from gates._store.access import open_store
from gates._store.review_queue import ReviewQueue
from gates._store.reviews import ReviewItem

Transport = Literal["stdio", "http"]

# How long the upstream has to start and answer `initialize` before the gateway gives up.
STARTUP_TIMEOUT_S = 30.0


class UpstreamUnavailable(GatesError):
    """The upstream MCP server could not be started, is not an MCP server, or stopped."""

    exit_code = 3


@dataclass(eq=False)
class _Session:
    """What the gateway keeps for one MCP session: its guarded run, and the SDK's session
    to send it notifications (known from its first request)."""

    run: GuardedRun
    client: ServerSession | None = None


class _GatewayServer(Server[_Session, Any]):
    """The SDK's low-level server, saying in every transport's handshake that it sends
    ``notifications/tools/list_changed`` (the HTTP session manager asks with no options)."""

    def create_initialization_options(
            self, notification_options: NotificationOptions | None = None,
            experimental_capabilities: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities)


class McpGateway:
    """One agent's guard in front of one upstream MCP server."""

    def __init__(self, guard: Guard, upstream: list[str], *, review_timeout_s: float,
                 actor: str, say: Callable[[str], None]) -> None:
        """Hold the guard and the upstream's command line (started by :meth:`serve`).

        Args:
            guard: The agent's guard; every call is decided by it.
            upstream: The upstream MCP server's command and its arguments.
            review_timeout_s: How long a review-routed call waits for a person.
            actor: Who runs the gateway, for the audit entries it writes.
            say: Where the gateway's one-line notices go (stderr for the CLI).
        """
        if not upstream:
            raise GatesError("no upstream command: give the MCP server to guard after `--`, "
                             "e.g. `reinstate mcp-gateway refund-agent -- python server.py`")
        self.guard = guard
        self.upstream_command = list(upstream)
        self.review_timeout_s = review_timeout_s
        self.actor = actor
        self.say = say
        self._upstream: ClientSession | None = None
        self._gone: str | None = None
        self._gone_event: anyio.Event | None = None
        self._hidden_reported: set[str] = set()
        self._live: set[_Session] = set()  # the sessions open now
        self._shown: list[dict[str, Any]] = []  # the tools clients were last told of
        self._schemas: dict[str, dict[str, Any]] = {}  # the upstream's input schemas
        self._changes, self._changed = anyio.create_memory_object_stream[None](1)
        self._sessions = itertools.count(1)
        self._started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    @property
    def agent(self) -> str:
        """The agent the gateway guards."""
        return self.guard.agent

    # -- the upstream ------------------------------------------------------------------

    async def _connect(self, stack: AsyncExitStack) -> ClientSession:
        command = shlex.join(self.upstream_command)
        # The upstream gets this process's environment (the SDK's default keeps only a
        # few variables, which loses a virtualenv's PATH and the user's settings).
        params = StdioServerParameters(command=self.upstream_command[0],
                                       args=self.upstream_command[1:], env=dict(os.environ))
        try:
            read, write = await stack.enter_async_context(stdio_client(params))
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._upstream_message))
            with anyio.fail_after(STARTUP_TIMEOUT_S):
                await session.initialize()
        except OSError as exc:
            raise UpstreamUnavailable(
                f"cannot start the upstream MCP server `{command}`: "
                f"{exc.strerror or exc}") from None
        except TimeoutError:
            raise UpstreamUnavailable(
                f"the upstream `{command}` did not answer MCP's initialize within "
                f"{STARTUP_TIMEOUT_S:g} s: is it an MCP server speaking stdio?") from None
        except McpError as exc:
            raise UpstreamUnavailable(
                f"the upstream `{command}` did not answer as an MCP server "
                f"({exc.error.message}): is it an MCP server speaking stdio?") from None
        return session

    def _upstream_stopped(self, why: str) -> None:
        if self._gone is None:
            self._gone = why
            if self._gone_event is not None:
                self._gone_event.set()

    async def _upstream_message(
            self, message: RequestResponder[types.ServerRequest, types.ClientResult]
            | types.ServerNotification | Exception) -> None:
        """The upstream's own messages: a change of its tools is noted for
        :meth:`_follow_tool_changes` (listing here, in the SDK's receiving loop, would wait
        for an answer that loop has to read)."""
        if isinstance(message, types.ServerNotification) and isinstance(
                message.root, types.ToolListChangedNotification):
            with suppress(anyio.WouldBlock):  # one pending already covers this change
                self._changes.send_nowait(None)

    async def _follow_tool_changes(self) -> None:
        """Read the upstream's tools again after each change it announces, and tell the
        open sessions when what they are shown changed."""
        async with self._changed:
            async for _ in self._changed:
                try:
                    shown = await self.list_tools()
                except McpError as exc:
                    self.say(f"the upstream's new tool list could not be read "
                             f"({exc.error.message}); clients keep the last one")
                    continue
                now = [tool.model_dump(mode="json") for tool in shown]
                if now == self._shown:
                    continue  # only hidden tools came or went: nothing a client sees
                self._shown = now
                told = 0
                for session in list(self._live):
                    if session.client is None:
                        continue
                    with suppress(Exception):  # a client that just left: nothing to tell
                        await session.client.send_tool_list_changed()
                        told += 1
                self.say(f"the upstream's tools changed: {len(now)} shown "
                         f"({', '.join(t['name'] for t in now) or 'none'}); told {told} "
                         f"session(s)")

    # -- tools/list --------------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        """The upstream's tools that the agent's permissions know; the others are hidden
        and reported once (a line and an audit entry), not at every request."""
        assert self._upstream is not None
        listed = (await self._upstream.list_tools()).tools
        self._schemas = {tool.name: tool.inputSchema for tool in listed}
        try:
            known = set(self.guard.workspace.controls(self.agent).permissions.tools)
        except Exception as exc:  # controls that do not load: hide everything, say why
            known = set()
            self.say(f"the permissions of {self.agent} cannot be read ({exc}); "
                     f"hiding every tool")
        shown = [tool for tool in listed if tool.name in known]
        hidden = sorted(tool.name for tool in listed
                        if tool.name not in known and tool.name not in self._hidden_reported)
        if hidden:
            self._hidden_reported.update(hidden)
            names = ", ".join(hidden)
            reason = (f"MCP gateway hides tools the permissions of {self.agent} do not list "
                      f"(deny by default): {names}")
            self.say(f"hidden: {names} (not in agents/{self.agent}/permissions.yaml)")
            open_store(self.guard.workspace).append(
                actor=self.actor, action="mcp_gateway.hidden_tools", agent=self.agent,
                reason=reason, detail={"tools": hidden,
                                       "upstream": shlex.join(self.upstream_command)})
        return shown

    # -- tools/call --------------------------------------------------------------------

    async def call_tool(self, session: _Session, name: str,
                        arguments: dict[str, Any]) -> types.CallToolResult:
        """Decide one call with the guard, and forward it, refuse it or hold it."""
        run = session.run
        decision = run.call(name, arguments)
        call_id = decision.call_id
        assert call_id is not None
        if decision.effect == "deny":
            return _tool_error(f"denied by {decision.rule}: {decision.reason}")
        if decision.effect == "review":
            try:
                released, final_args, why = await self._hold(run, name, arguments, decision)
            except anyio.get_cancelled_exc_class():
                with suppress(GatesError):  # the run already ended: nothing more to log
                    run.result(call_id, error="cancelled while held for review: never "
                                              "forwarded", blocked=True)
                raise
            if not released:
                run.result(call_id, error=why, blocked=True)
                return _tool_error(why)
            arguments = final_args
        if self._gone is not None:
            run.result(call_id, error=self._gone)
            return _tool_error(self._gone)
        refused = await self._refused_upstream(name, arguments)
        if refused is not None:
            run.result(call_id, error=refused, blocked=True)
            return _tool_error(refused)
        assert self._upstream is not None
        try:
            result = await self._upstream.call_tool(name, arguments)
        except McpError as exc:
            why = f"the upstream MCP server failed on {name}: {exc.error.message}"
            if exc.error.code == types.CONNECTION_CLOSED:
                why = (f"the upstream MCP server `{shlex.join(self.upstream_command)}` "
                       f"stopped; the gateway is shutting down")
                self._upstream_stopped(why)
            run.result(call_id, error=why)
            return _tool_error(why)
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call (or left) after it went up: nothing tells the
            # upstream to stop, so it may well take effect; the log says so, never leaving
            # a forwarded call without an answer.
            with suppress(GatesError):  # the run already ended: nothing more to log
                run.result(call_id, error=f"cancelled after it was forwarded to the "
                                          f"upstream: whether {name} took effect is unknown")
            raise
        value = _result_value(result)
        run.result(call_id, None if result.isError else value,
                   error=json.dumps(value) if result.isError else None)
        return result

    async def _refused_upstream(self, name: str, arguments: dict[str, Any]) -> str | None:
        """Why a call the controls allowed is not forwarded: its arguments break the
        upstream's own input schema, or that schema cannot be read. The controls decided on
        the arguments as sent; an upstream that coerces them (a FastMCP tool reads
        ``"200"`` as 200.0) would run a call the controls never decided (a refund a
        typeless ``exclusiveMinimum: 150`` review rule did not hold), so only arguments
        its schema takes as they are go up."""
        if name not in self._schemas:
            await self.list_tools()  # a client that calls without listing first
        schema = self._schemas.get(name)
        if schema is None:
            return f"the upstream lists no tool {name}: not forwarded"
        try:
            check_json_schema(schema)
        except ValueError as exc:
            return (f"the upstream's input schema of {name} cannot be checked ({exc}): "
                    f"not forwarded")
        problem = schema_violation(schema, arguments)
        if problem is None:
            return None
        return (f"not forwarded: the arguments break the upstream's own input schema of "
                f"{name} ({problem}), so it could run another call than the controls "
                f"decided")

    async def _hold(self, run: GuardedRun, name: str, arguments: dict[str, Any],
                    decision: GuardDecision) -> tuple[bool, dict[str, Any], str]:
        """Submit a review-routed call to the queue and wait for a person (or the timeout).

        What a person decided is read from the audit log for the call as held here
        (:func:`vouched_item`): an approval releases exactly ``arguments``, never the
        store's copy. What is released is decided again (:func:`release_held`) with
        today's mode and controls after the session's whole history: a release the
        controls stop is refused, with an audit entry, and never forwarded.

        Returns whether it was released, the arguments to forward, and why not."""
        try:
            queue = ReviewQueue(self.guard.workspace)
            submitted = queue.submit(self.agent, kind="call", reason=decision.reason,
                                     tool=name, args=arguments, rule=decision.rule,
                                     run_id=run.run_id, source="gateway")
        except Exception as exc:  # a queue that cannot hold it: nobody will decide, deny
            return False, arguments, (f"routed to review by {decision.rule} "
                                      f"({decision.reason}), but the review queue cannot "
                                      f"take it ({exc}); failing closed")
        self.say(f"held {name} for review as {submitted.id} ({decision.rule}): "
                 f"`reinstate review approve {submitted.id} --reason …` releases it")
        try:
            # The store's row only says that a decision was made; what it is, the log says.
            item = await anyio.to_thread.run_sync(
                lambda: self._vouched(queue, submitted), abandon_on_cancel=True)
        except Exception as exc:
            return False, arguments, (f"review {submitted.id} could not be read ({exc}); "
                                      f"failing closed")
        # Decided here, in the session's own thread: its history is the one calls append to.
        decided = item
        item = release_held(run, decision, decided, actor=self.actor, source="gateway")
        if not item.released:
            if decided.released or decided.decided_by == self.actor:  # refused here
                self.say(f"refused the release of {item.id}: {item.decision_reason}")
            return False, arguments, (f"review {item.id} {item.status} by "
                                      f"{item.decided_by}: {item.decision_reason}")
        return True, dict(item.final_args or {}), ""

    def _vouched(self, queue: ReviewQueue, submitted: ReviewItem) -> ReviewItem:
        queue.wait(submitted.id, timeout_s=self.review_timeout_s)
        return vouched_item(queue, submitted, actor=self.actor, source="gateway")

    # -- the MCP server ----------------------------------------------------------------

    def server(self, transport: Transport) -> Server[_Session, Any]:
        """The gateway's MCP server: one guarded run per session, opened by its lifespan."""
        gateway = self

        @asynccontextmanager
        async def one_session(_: Server[_Session, Any]) -> AsyncIterator[_Session]:
            number = next(gateway._sessions)
            run_id = f"mcp-{gateway._started}-{os.getpid()}-{number}"
            goal = (f"tool calls of an MCP client to "
                    f"`{shlex.join(gateway.upstream_command)}` through reinstate "
                    f"mcp-gateway ({transport})")
            with gateway.guard.run(run_id, goal=goal, context={
                    "gateway": "mcp", "transport": transport,
                    "upstream": shlex.join(gateway.upstream_command)}) as run:
                session = _Session(run)
                gateway._live.add(session)
                try:
                    yield session
                except anyio.get_cancelled_exc_class():
                    # The gateway stopping (SIGTERM, its upstream gone) ends open sessions
                    # by cancelling them: a normal end of the run, not an error of it.
                    run.finish("the gateway stopped")
                    raise
                finally:
                    gateway._live.discard(session)

        server = _GatewayServer(f"reinstate-gateway-{self.agent}", lifespan=one_session)

        def session_of_request() -> _Session:
            # The SDK's session is known to a handler only: kept for notifications.
            context = server.request_context
            context.lifespan_context.client = context.session
            return context.lifespan_context

        @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
        async def list_tools() -> list[types.Tool]:
            session_of_request()
            return await gateway.list_tools()

        # The upstream validates its own arguments; the guard decides on what was sent.
        @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
        async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
            return await gateway.call_tool(session_of_request(), name, arguments)

        return server

    async def serve(self, transport: Transport, *, host: str = "127.0.0.1",
                    port: int = 0) -> None:
        """Start the upstream, then serve MCP until the client leaves (stdio), the process
        is stopped (HTTP), or the upstream stops (raises :class:`UpstreamUnavailable`)."""
        try:
            await self._serve(transport, host, port)
        except BaseExceptionGroup as group:
            # The SDK's task groups wrap what the gateway raised inside them: the user gets
            # the gateway's own error, one line, not the group's traceback.
            ours = group.subgroup(lambda exc: isinstance(exc, ReinstateError))
            if ours is not None:
                raise _first_leaf(ours) from None
            broken = group.subgroup(lambda exc: isinstance(
                exc, anyio.BrokenResourceError | anyio.ClosedResourceError | OSError))
            if broken is None:
                raise
            command = shlex.join(self.upstream_command)
            if self._upstream is None:  # nothing served yet: the upstream's pipe it was
                raise UpstreamUnavailable(
                    f"the upstream `{command}` did not answer as an MCP server (it closed "
                    f"its stdin): is it an MCP server speaking stdio?") from None
            raise UpstreamUnavailable(
                self._gone or f"an MCP pipe broke ({_first_leaf(broken)!r}); the gateway "
                              f"stopped") from None
        if self._gone is not None:
            raise UpstreamUnavailable(self._gone)

    async def _serve(self, transport: Transport, host: str, port: int) -> None:
        self._gone_event = anyio.Event()
        async with AsyncExitStack() as stack:
            self._upstream = await self._connect(stack)
            # The hidden tools are reported at start-up; what is shown is the base a
            # change of the upstream's tools is compared with.
            self._shown = [tool.model_dump(mode="json") for tool in await self.list_tools()]
            server = self.server(transport)
            async with anyio.create_task_group() as group:
                stop: Callable[[], None] = group.cancel_scope.cancel

                async def watch_upstream() -> None:
                    assert self._gone_event is not None
                    await self._gone_event.wait()
                    await anyio.sleep(0.5)  # the tool error of the failed call goes out first
                    stop()

                group.start_soon(watch_upstream)
                group.start_soon(self._follow_tool_changes)
                if transport == "stdio":
                    await _serve_stdio(server)
                else:
                    await _serve_http(server, host, port, self.say)
                group.cancel_scope.cancel()


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _serve_stdio(server: Server[_Session, Any]) -> None:
    from mcp.server.stdio import stdio_server

    fd = sys.stdin.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):  # a file or a terminal: as the SDK
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    lines = _PipeLines(fd)
    try:
        async with stdio_server(stdin=cast("anyio.AsyncFile[str]", lines)) as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        lines.close()


class _PipeLines:
    """The lines of a pipe read without a thread: the SDK reads stdin in a worker thread,
    which nothing can stop, so a gateway whose upstream stopped would wait for its client's
    next line before it could exit; this one is cancelled like any other wait."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        self._buffer = b""

    def __aiter__(self) -> _PipeLines:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self._buffer:
            await anyio.wait_readable(self._fd)
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                if not self._buffer:
                    raise StopAsyncIteration
                line, self._buffer = self._buffer, b""
                return line.decode("utf-8", errors="replace")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace") + "\n"

    def close(self) -> None:
        """Leave the pipe as it was found (its other readers may expect blocking reads)."""
        os.set_blocking(self._fd, self._was_blocking)


async def _serve_http(server: Server[_Session, Any], host: str, port: int,
                      say: Callable[[str], None]) -> None:
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.types import Receive, Scope, Send

    security = None
    if host in ("127.0.0.1", "localhost", "::1"):  # as the SDK's own servers: no rebinding
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
    manager = StreamableHTTPSessionManager(app=server, security_settings=security)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    app = Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)
    # The socket is bound here, so port 0 (any free port) can be printed before serving.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before the address is printed: a client that connects as soon as it
        # reads it waits in the backlog, where a socket only bound would refuse it while
        # the server is still starting.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise GatesError(f"--host {host} --port {port}: cannot listen there "
                         f"({exc.strerror or exc})") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    say(f"serving MCP (streamable HTTP) at http://{shown}:{bound}/mcp")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


def _tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                isError=True)


def _result_value(result: types.CallToolResult) -> Any:
    """What the run log keeps of a tool's answer, as the controls read it later in the run
    (``s.result.total``): the structured content, else the text (as JSON when it is)."""
    if result.structuredContent is not None:
        return result.structuredContent
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if len(texts) == 1:
        try:
            return json.loads(texts[0])
        except ValueError:
            return texts[0]
    return texts or [block.model_dump(mode="json") for block in result.content]


def say_on_stderr(line: str) -> None:
    """One notice line on stderr (stdout is the MCP channel in stdio mode)."""
    print(f"reinstate mcp-gateway: {line}", file=sys.stderr, flush=True)
