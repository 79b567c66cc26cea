"""The support agent behind reinstate's JSON-lines protocol (fixture for the contract).

MODE in the environment makes it misbehave on purpose: "garbage" writes a line that is
not JSON, "die" exits in the middle of a conversation.
"""

from __future__ import annotations

import json
import os
import sys


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def call(tool: str, arguments: dict) -> dict:
    send({"type": "tool_call", "tool": tool, "arguments": arguments})
    return json.loads(sys.stdin.readline())


def main() -> None:
    mode = os.environ.get("MODE", "")
    for line in sys.stdin:
        json.loads(line)
        order = call("lookup_order", {"order_id": "A-1"})
        if mode == "garbage":
            sys.stdout.write("Sure! Here is your refund.\n")
            sys.stdout.flush()
            continue
        if mode == "hang":
            sys.stdin.readline()  # waits for a line that never comes
        if mode == "die":
            sys.stderr.write("fatal: out of memory\n")
            sys.exit(7)
        total = order["result"]["total"]
        send({"type": "usage", "input_tokens": 120, "output_tokens": 30})
        refund = call("issue_refund", {"order_id": "A-1", "amount": total})
        if "error" in refund:
            send({"type": "output", "content": f"Could not refund: {refund['error']}"})
        else:
            send({"type": "output", "content": f"Refunded ${total:.2f}"})


if __name__ == "__main__":
    main()
