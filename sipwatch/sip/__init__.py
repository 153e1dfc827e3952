"""Sans-IO SIP: message build/parse, URIs, the non-INVITE client transaction, digest auth.

Nothing under `sipwatch.sip` imports asyncio or socket, except the drivers and their one
socket module: `sockets.py` (the socket helpers both drivers share), `transport.py` (asyncio
sockets), `blocking.py` (the select() driver), `client.py` (the asyncio adapter that feeds
transactions from transports) and `resolve.py` (RFC 3263 over dnspython's asyncio resolver).
`uri.py` takes only `inet_pton` from socket, to tell address literals apart (no I/O).
Neither driver imports the other.
"""
