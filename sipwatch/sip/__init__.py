"""Sans-IO SIP: message build/parse, URIs, the non-INVITE client transaction, digest auth.

Nothing under `sipwatch.sip` imports asyncio or socket, except `transport.py` (the only socket
code), `client.py` (the asyncio adapter that feeds transactions from transports) and
`resolve.py` (RFC 3263 over dnspython's asyncio resolver).
"""
