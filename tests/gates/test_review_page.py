"""`reinstate review serve`: the reviewers' page, used in headless Chromium as a person would,
and refusing what does not come from its own forms."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gates import ReviewQueue, Workspace, open_store
from tests.browser import Browser
from tests.conftest import CLI
from tests.helpers import ACTOR

AGENT = "refund-agent"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """One headless Chromium for the test."""
    chromium = Browser(width=1280, height=900)
    yield chromium
    chromium.close()


@pytest.fixture
def served(example: Workspace) -> Iterator[str]:
    """`reinstate review serve --port 0` running on the example; its page's address, as
    printed (with the token that shows the page)."""
    env = {**os.environ, "REINSTATE_ACTOR": ACTOR}
    env.pop("REINSTATE_WORKSPACE", None)
    with subprocess.Popen([*CLI, "-C", str(example.root), "review", "serve", "--port", "0"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert "review queue: http://127.0.0.1:" in line and "/?token=" in line, line
            yield line.split()[2]
        finally:
            server.terminate()
            server.communicate(timeout=30)


def _base(page: str) -> str:
    """The server's address without the page's token (``http://127.0.0.1:PORT/``)."""
    return page.split("?", 1)[0]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: bytes, host: str | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", **({"Host": host} if host else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_a_reviewer_approves_through_the_page(example: Workspace, served: str,
                                              browser: Browser, tmp_path: Path) -> None:
    """The page lists the pending call; its approve form decides it in the store and the log."""
    queue = ReviewQueue(example)
    held = queue.submit(AGENT, kind="call", tool="close_account",
                        args={"customer_id": "C-1001"}, rule="permissions.close_account",
                        reason="<b>every</b> closure is confirmed", source="guard")
    browser.open(served)
    assert browser.evaluate("document.title").startswith("1 pending")
    card = f"document.getElementById('{held.id}')"
    assert "close_account" in browser.evaluate(f"{card}.innerText")
    # Stored text is shown as text, never as markup.
    assert browser.evaluate(f"{card}.querySelectorAll('b').length") == 0
    assert "<b>every</b> closure" in browser.evaluate(f"{card}.innerText")
    browser.evaluate(f"{card}.querySelector('form.decide input[name=reason]').value = "
                     f"'customer confirmed by phone'")
    browser.act(f"{card}.querySelector('form.decide button.approve').click()")
    assert "R-1 approved by test.engineer" in browser.evaluate("document.body.innerText")
    assert browser.evaluate("document.getElementById('nothing-pending') !== null")
    browser.screenshot(tmp_path / "review-page.png")
    done = queue.get(held.id)
    assert (done.status, done.decided_by, done.decision_reason) == (
        "approved", ACTOR, "customer confirmed by phone")
    entry = open_store(example).audit()[-1]
    assert (entry.action, entry.actor, entry.detail["review"]) == ("review.approve", ACTOR,
                                                                   held.id)


@pytest.mark.slow
def test_a_reviewer_edits_an_output_through_the_page(example: Workspace, served: str,
                                                     browser: Browser) -> None:
    """The edit form releases the reviewer's text instead of the agent's."""
    queue = ReviewQueue(example)
    held = queue.submit(AGENT, kind="output", text="Refunded $900 to account 4417.",
                        reason="review mode")
    browser.open(served)
    card = f"document.getElementById('{held.id}')"
    browser.evaluate(f"{card}.querySelector('form.edit textarea').value = 'Refunded $900.'")
    browser.evaluate(f"{card}.querySelector('form.edit input[name=reason]').value = "
                     f"'no account numbers'")
    browser.act(f"{card}.querySelector('form.edit button').click()")
    done = queue.get(held.id)
    assert done.status == "edited" and done.final_text == "Refunded $900."


@pytest.mark.slow
def test_decisions_without_the_pages_token_are_refused(example: Workspace,
                                                       served: str) -> None:
    """A POST with no token, a wrong one, or addressed to another host decides nothing."""
    queue = ReviewQueue(example)
    held = queue.submit(AGENT, kind="call", tool="close_account", args={}, reason="closure")
    form = f"id={held.id}&action=approve&reason=sneaky".encode()
    assert _post(f"{_base(served)}decide", form) == 403
    assert _post(f"{_base(served)}decide", form + b"&csrf=not-the-token") == 403
    with urllib.request.urlopen(served, timeout=30) as page:
        html = page.read().decode()
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert _post(f"{_base(served)}decide", form + f"&csrf={token}".encode(),
                 host="evil.example") == 421
    assert queue.get(held.id).status == "pending"
    assert [e.action for e in open_store(example).audit()] == ["review.submit"]
    # The same form with the page's own token, at the page's own address, decides.
    assert _post(f"{_base(served)}decide", form + f"&csrf={token}".encode()) in (200, 303)
    assert queue.get(held.id).status == "approved"


@pytest.mark.attack
def test_a_local_process_without_the_printed_address_does_not_approve(
        example: Workspace, served: str) -> None:
    """Any process on the machine can connect to the page's port, the agent under review
    among them: without the token in the address the server printed it is shown neither the
    page nor the forms' token in it, so it cannot approve its own call as the reviewer."""
    queue = ReviewQueue(example)
    held = queue.submit(AGENT, kind="call", tool="issue_refund",
                        args={"order_id": "A-1001", "amount": 900}, reason="over 500")
    base = _base(served)
    for url in (base, f"{base}?done={held.id}", f"{base}?token=guessed"):
        status, body = _get(url)
        assert status == 403 and 'name="csrf"' not in body, (url, status)
        assert "open the address `reinstate review serve` printed" in body
    assert [e.action for e in open_store(example).audit()] == ["review.submit"]
    assert queue.get(held.id).status == "pending"
    # The printed address shows the page, and the redirect after a decision keeps it shown.
    status, html = _get(served)
    assert status == 200 and f'id="{held.id}"' in html
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = f"id={held.id}&action=reject&reason=not+this+one&csrf={token}".encode()
    request = urllib.request.Request(f"{base}decide", data=form, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # follows the 303
        assert answer.status == 200 and f"{held.id} rejected by" in answer.read().decode()


def test_an_unreadable_store_is_a_clear_error_page_and_releases_nothing(
        example: Workspace, served: str) -> None:
    """A queue row edited into garbage: the page answers 503 naming the store and the row
    (before: a traceback on the server's stderr and a dropped connection), an approval
    posted then decides nothing, and the page comes back when the row does."""
    queue = ReviewQueue(example)
    held = queue.submit(AGENT, kind="call", tool="issue_refund",
                        args={"order_id": "A-1001", "amount": 900}, reason="over 500")
    status, html = _get(served)
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    db = example.root / ".reinstate" / "state.db"
    with sqlite3.connect(db) as conn:
        body = conn.execute("SELECT body FROM reviews WHERE num = 1").fetchone()[0]
        conn.execute("UPDATE reviews SET body = 'garbage' WHERE num = 1")
    status, text = _get(served)
    assert status == 503 and f"state store {db}: review item 1 is not as" in text
    assert 'name="csrf"' not in text and "what waits stays held" in text
    form = f"id={held.id}&action=approve&reason=ok&csrf={token}".encode()
    assert _post(f"{_base(served)}decide", form) == 503
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE reviews SET body = ? WHERE num = 1", (body,))
    assert queue.get(held.id).status == "pending"
    assert [e.action for e in open_store(example).audit()] == ["review.submit"]
    status, html = _get(served)
    assert status == 200 and f'id="{held.id}"' in html


@pytest.mark.attack
def test_a_row_swapped_behind_the_log_is_flagged_and_only_rejected_on_the_page(
        example: Workspace, served: str) -> None:
    """The page reads the store's rows; one rewritten behind the audit log is flagged, has no
    approve or edit form, and an approval posted for it anyway decides nothing."""
    queue = ReviewQueue(example)
    swapped = queue.submit(AGENT, kind="call", tool="issue_refund",
                           args={"order_id": "A-1001", "amount": 900}, reason="over 500")
    honest = queue.submit(AGENT, kind="call", tool="issue_refund",
                          args={"order_id": "A-1002", "amount": 800}, reason="over 500")
    with sqlite3.connect(example.root / ".reinstate" / "state.db") as conn:
        changed = swapped.model_copy(update={"args": {"order_id": "A-1001", "amount": 9}})
        conn.execute("UPDATE reviews SET body = ? WHERE num = 1", (changed.model_dump_json(),))
    with urllib.request.urlopen(served, timeout=30) as page:
        html = page.read().decode()
    first, second = (html.split(f'<article class="item" id="{i.id}">', 1)[1]
                     .split("</article>", 1)[0] for i in (swapped, honest))
    assert "Not as submitted: the store&#39;s row shows other arguments" in first
    assert 'value="approve"' not in first and 'value="edit"' not in first
    assert 'value="reject"' in first
    assert "Not as submitted" not in second and 'value="approve"' in second
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = f"id={swapped.id}&action=approve&reason=small&csrf={token}".encode()
    assert _post(f"{_base(served)}decide", form) not in (200, 303)
    assert queue.get(swapped.id).status == "pending"
    assert [e.action for e in open_store(example).audit()] == ["review.submit"] * 2


@pytest.mark.attack
def test_hidden_characters_in_held_text_are_written_out_on_the_page(
        example: Workspace, served: str) -> None:
    """An agent's arguments and answer holding a bidi override (U+202E) and a zero-width
    space (U+200B): shown raw, the page would display them reordered to the reviewer (the
    amount read backwards, a word hidden). Every place the page shows agent text, the
    pending forms and the Decided table alike, writes them out as the CLI does."""
    queue = ReviewQueue(example)
    call = queue.submit(AGENT, kind="call", tool="issue_\u202erefund",
                        args={"order\u200b_id": "A-1001", "note": "\u202e009 dnufer"},
                        reason="over \u202e500", rule="limits.\u200brefund",
                        run_id="run-\u202e1", source="api\u200b")
    answer = queue.submit(AGENT, kind="output", text="Your refund of \u202e009$ is on\n"
                          "its way\u200b.", reason="mentions a refund")
    decided = queue.submit(AGENT, kind="output", text="closed \u202e1001-C\u200b for you",
                           reason="mentions closing")
    queue.reject(decided.id, actor=ACTOR, reason="said \u202eit all")
    status, html = _get(served)
    assert status == 200 and f'id="{call.id}"' in html and f'id="{answer.id}"' in html
    assert "\u202e" not in html and "\u200b" not in html
    decided_row = html.split(f'<tr id="{decided.id}">', 1)[1].split("</tr>", 1)[0]
    assert "closed \\u202e1001-C\\u200b for you" in decided_row
    assert "said \\u202eit all" in decided_row
    pending = html.split(f'<article class="item" id="{answer.id}">', 1)[1].split("</article>")[0]
    assert "Your refund of \\u202e009$ is on\nits way\\u200b." in pending
    assert "issue_\\u202erefund" in html and "over \\u202e500" in html
