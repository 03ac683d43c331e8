"""A real SMTP server on loopback for the portal's browser test (aiosmtpd).

Listens on 127.0.0.1 on a free port, prints {"listening": PORT} and then one JSON line
per message received ({"from", "to", "subject", "body"}, the body decoded) on stdout.
Exits when its standard input closes, so a test that dies takes it along.
"""

import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP


class Capture:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain",)) or message
        print(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "subject": str(message.get("Subject", "")),
                    "body": part.get_content(),
                }
            ),
            flush=True,
        )
        return "250 Message accepted"


async def main():
    loop = asyncio.get_running_loop()
    # hostname given, so aiosmtpd does not look up this machine's FQDN (slow offline).
    server = await loop.create_server(
        lambda: SMTP(Capture(), hostname="localhost", enable_SMTPUTF8=True),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"listening": port}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
