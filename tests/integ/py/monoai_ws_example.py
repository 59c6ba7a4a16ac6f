#!/usr/bin/python3
"""Seed 002's WebSocket example, run against sluice's monoai dialect with the client the seed
used (Python `websockets`, default options: compression offered, pings on).

    monoai_ws_example.py PORT [PROMPT] [PATH]

Connects to ws://127.0.0.1:PORT/model/ws (or PATH), sends {"prompt": PROMPT}, writes each
chunk's content to stdout as it arrives (nothing else goes to stdout), and stops at "complete".
Exit 0 when the stream completed and result.response equals the chunks joined; 1 on an
{"error"} message, a malformed message or a mismatch; 2 when the connection failed, closed
early or nothing came within 10 s. Diagnostics go to stderr.
"""
import asyncio
import json
import sys

import websockets


async def run(port, prompt, path):
    uri = f"ws://127.0.0.1:{port}{path}"
    async with websockets.connect(uri, open_timeout=5, close_timeout=2) as websocket:
        await websocket.send(json.dumps({"prompt": prompt}))
        text = []
        while True:
            response = await asyncio.wait_for(websocket.recv(), timeout=10)
            data = json.loads(response)
            if not isinstance(data, dict):
                print(f"not a JSON object: {response!r}", file=sys.stderr)
                return 1
            if "error" in data:
                print(f"Errore: {data['error']}", file=sys.stderr)
                return 1
            if data.get("type") == "chunk":
                sys.stdout.write(data["content"])
                sys.stdout.flush()
                text.append(data["content"])
            elif data.get("type") == "complete":
                result = data.get("result") or {}
                print(f"Completo: {json.dumps(result)}", file=sys.stderr)
                if result.get("response") != "".join(text):
                    print("result.response differs from the chunks joined", file=sys.stderr)
                    return 1
                usage = result.get("usage") or {}
                if not isinstance(usage.get("total_tokens"), int):
                    print("result.usage.total_tokens missing", file=sys.stderr)
                    return 1
                return 0
            else:
                print(f"unexpected message: {response!r}", file=sys.stderr)
                return 1


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    prompt = sys.argv[2] if len(sys.argv) > 2 else "Ciao WebSocket"
    path = sys.argv[3] if len(sys.argv) > 3 else "/model/ws"
    try:
        return asyncio.run(run(port, prompt, path))
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        print(f"connection problem: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as e:
        print(f"malformed message: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
